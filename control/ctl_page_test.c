/* ctl_page_test.c: being written (placeholder so meson configures; replaced by its owner) */
