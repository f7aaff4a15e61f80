/* ctl_work.c: being written (placeholder so meson configures; replaced by its owner) */
