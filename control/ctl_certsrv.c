/* ctl_certsrv.c: being written (placeholder so meson configures; replaced by its owner) */
