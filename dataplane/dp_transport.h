/* dp_transport: the table a transport fills so that engines (TLS, HTTP/EST,
 * later CAPF) move bytes without knowing what carries them. The kernel
 * transport (dp_kernel.c: epoll + non-blocking sockets) is the default; a
 * DPDK + lwIP transport (dp_lwip.c + dp_dpdk.c) fills the same table.
 * Chosen once at startup (setting `transport`).
 * Thread: the ops run on the polling core that owns the connection. */
#ifndef DP_TRANSPORT_H
#define DP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct dp_core dp_core_t;
typedef struct dp_runtime dp_runtime_t;

/* dp_conn_t: a transport connection handle embedded in each session. */
typedef struct {
    int fd;           /* kernel transport: the socket */
    void *pcb;        /* other transports: their connection object */
    bool rx_dry;      /* a read found nothing since the last readable event:
                         reads answer DP_IO_AGAIN without a system call */
    bool rx_hup;      /* the peer closed its side: its EOF is still to be read,
                         so a short read does not mean "drained" */
    bool watch_out;   /* the transport reports writability (after a send
                         would have blocked) */
} dp_conn_t;

/* Results of recv/send besides a positive byte count. */
enum { DP_IO_EOF = 0, DP_IO_AGAIN = -1, DP_IO_ERROR = -2 };

typedef struct {
    const char *name;
    /* setup opens the listeners of every core. Startup only.
     * Returns 0 or -1 with a cause in `why`. */
    int (*setup)(dp_runtime_t *rt, char *why, size_t why_len);
    /* run is the polling loop of `core` until the runtime stops and the core
     * has drained. Polling core only. */
    void (*run)(dp_core_t *core);
    /* recv reads up to `len` bytes: >0 count, DP_IO_EOF, DP_IO_AGAIN, DP_IO_ERROR. */
    ssize_t (*recv)(dp_conn_t *c, void *buf, size_t len);
    /* send writes up to `len` bytes: >0 count, DP_IO_AGAIN, DP_IO_ERROR. */
    ssize_t (*send)(dp_conn_t *c, const void *buf, size_t len);
    /* watch_write asks for writable events on `c` from now on (called
     * when a send would block); `owner` is the session. */
    void (*watch_write)(dp_core_t *core, dp_conn_t *c, void *owner);
    /* close releases the connection. */
    void (*close)(dp_core_t *core, dp_conn_t *c);
    /* stop_listening closes `core`'s listeners (drain on SIGTERM). */
    void (*stop_listening)(dp_core_t *core);
    /* log_stats logs the transport's counters of `core` (SIGUSR1, exit);
     * NULL if it has none of its own. Polling core only. */
    void (*log_stats)(dp_core_t *core);
    /* cleanup releases what setup made, after every core has stopped.
     * Exit only (main thread). */
    void (*cleanup)(dp_runtime_t *rt);
} dp_transport_ops_t;

extern const dp_transport_ops_t dp_kernel_transport;
extern const dp_transport_ops_t dp_dpdk_transport;

#endif
