/* ctl_certsrv_probe.c: being written */
int main(void) { return 0; }
