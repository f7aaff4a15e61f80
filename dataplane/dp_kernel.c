/* dp_kernel: the default transport: Linux sockets. Each polling core has its
 * own SO_REUSEPORT listener and its own epoll instance; the kernel spreads
 * new connections across cores and a connection stays on the core that
 * accepted it. Sockets are non-blocking and registered edge-triggered once;
 * the TLS engine reads until EAGAIN. TCP_DEFER_ACCEPT wakes a core only when
 * the ClientHello has arrived, so the handshake starts in the same wake-up.
 * Thread: setup at startup; everything else on the owning polling core. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/dp_core.h"
#include "dataplane/dp_log.h"
#include "dataplane/dp_runtime.h"

#define DP_EPOLL_BATCH 256
#define DP_ACCEPT_BATCH 64

/* dp_parse_hostport resolves "HOST:PORT" or "[V6]:PORT" (numeric or name). */
static int dp_parse_hostport(const char *spec, struct sockaddr_storage *ss, socklen_t *len,
                             char *why, size_t why_len) {
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1]) {
        snprintf(why, why_len, "'%s' is not HOST:PORT", spec);
        return -1;
    }
    size_t hl = (size_t)(colon - spec);
    const char *h = spec;
    if (spec[0] == '[' && colon[-1] == ']') {
        h = spec + 1;
        hl -= 2;
    }
    if (hl >= sizeof(host)) {
        snprintf(why, why_len, "'%s': host name too long", spec);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int r = getaddrinfo(host, colon + 1, &hints, &res);
    if (r || !res) {
        snprintf(why, why_len, "cannot resolve '%s': %s", spec, gai_strerror(r));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int dp_listen_socket(const struct sockaddr_storage *ss, socklen_t len, bool reuseport,
                            unsigned sndbuf) {
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1, defer = 1; /* seconds; silent clients then meet handshake_timeout */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* inherited by accepted sockets */
    if (sndbuf) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)); /* inherited too */
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 4096) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* dp_kernel_listen opens, on every core, an SO_REUSEPORT listener on `spec`
 * into the listener at `off` inside dp_core_t. */
static int dp_kernel_listen(dp_runtime_t *rt, const char *spec, size_t off, char *why, size_t why_len) {
    struct sockaddr_storage ss;
    socklen_t len;
    if (dp_parse_hostport(spec, &ss, &len, why, why_len)) return -1;
    /* Probe without SO_REUSEPORT first: if another process holds the port
     * (even with SO_REUSEPORT), fail loudly instead of sharing it. */
    int probe = dp_listen_socket(&ss, len, false, 0);
    if (probe < 0) {
        snprintf(why, why_len, "cannot listen on %s: %s", spec, strerror(errno));
        return -1;
    }
    close(probe);
    for (unsigned i = 0; i < rt->num_cores; i++) {
        dp_core_t *c = &rt->cores[i];
        dp_listener_t *l = (dp_listener_t *)((char *)c + off);
        l->fd = dp_listen_socket(&ss, len, true, rt->cfg.so_sndbuf);
        if (l->fd < 0) {
            snprintf(why, why_len, "cannot listen on %s: %s", spec, strerror(errno));
            return -1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
        if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, l->fd, &ev)) {
            snprintf(why, why_len, "epoll_ctl: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int dp_kernel_setup(dp_runtime_t *rt, char *why, size_t why_len) {
    for (unsigned i = 0; i < rt->num_cores; i++)
        if (dp_core_epoll_init(&rt->cores[i], why, why_len)) return -1;
    if (dp_kernel_listen(rt, rt->cfg.est_listen, offsetof(dp_core_t, est_listener), why, why_len)) return -1;
    if (rt->cfg.capf_listen[0] &&
        dp_kernel_listen(rt, rt->cfg.capf_listen, offsetof(dp_core_t, capf_listener), why, why_len))
        return -1;
    return 0;
}

static void dp_format_peer(const struct sockaddr_storage *ss, char *out, size_t cap) {
    char a[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
        port = ntohs(s4->sin_port);
        snprintf(out, cap, "%s:%u", a, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
        port = ntohs(s6->sin6_port);
        snprintf(out, cap, "[%s]:%u", a, port);
    } else {
        snprintf(out, cap, "unknown");
    }
}

static void dp_kernel_accept(dp_core_t *c, dp_listener_t *l) {
    for (int i = 0; i < DP_ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                DP_WARN("accept on %s: %s", l->proto == DP_PROTO_CAPF ? c->rt->cfg.capf_listen : c->rt->cfg.est_listen,
                        strerror(errno));
            return;
        }
        char peer[48];
        dp_format_peer(&ss, peer, sizeof(peer));
        dp_sess_t *s = dp_core_accepted(c, (dp_conn_t){.fd = fd}, peer, l->proto);
        if (!s) {
            close(fd);
            continue;
        }
        /* Writable interest is added only when a send would block
         * (dp_kernel_watch_write): registering it up front costs an extra
         * wake-up per connection for the edge reported at once. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = s};
        if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev)) {
            DP_WARN("epoll_ctl add peer=%s: %s", peer, strerror(errno));
            dp_sess_on_io(s, false, false, true);
            continue;
        }
        dp_sess_on_io(s, true, true, false);
    }
}

static void dp_kernel_run(dp_core_t *c) {
    struct epoll_event evs[DP_EPOLL_BATCH];
    while (!dp_core_should_exit(c)) {
        int wait = dp_core_service(c, 100);
        int n = epoll_wait(c->epfd, evs, DP_EPOLL_BATCH, wait);
        if (n < 0) {
            if (errno != EINTR) DP_ERR("epoll_wait: %s", strerror(errno));
            continue;
        }
        c->now_ms = dp_now_ms();
        for (int i = 0; i < n; i++) {
            uint8_t type = *(uint8_t *)evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (type == DP_POLL_LISTENER) dp_kernel_accept(c, evs[i].data.ptr);
            else if (!dp_core_on_poll(c, evs[i].data.ptr, e)) {
                dp_sess_t *s = evs[i].data.ptr;
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->conn.rx_dry = false;
                /* data and FIN can arrive under one edge: the EOF then only
                 * shows on the read after a short one, with no new event */
                if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->conn.rx_hup = true;
                dp_sess_on_io(s, e & EPOLLIN, e & EPOLLOUT, e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
            }
        }
    }
}

/* Sockets are edge-triggered: once a read came back short (or empty), the
 * socket was drained, and anything arriving later raises a new readable
 * event; until then reads are answered without a system call. */
static ssize_t dp_kernel_recv(dp_conn_t *conn, void *buf, size_t len) {
    if (conn->rx_dry) return DP_IO_AGAIN;
    ssize_t n = read(conn->fd, buf, len);
    if (n > 0 && (size_t)n < len && !conn->rx_hup) conn->rx_dry = true;
    if (n >= 0) return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        conn->rx_dry = true;
        return DP_IO_AGAIN;
    }
    return errno == EINTR ? DP_IO_AGAIN : DP_IO_ERROR;
}

static ssize_t dp_kernel_send(dp_conn_t *conn, const void *buf, size_t len) {
    ssize_t n = send(conn->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? DP_IO_AGAIN : DP_IO_ERROR;
}

static void dp_kernel_watch_write(dp_core_t *c, dp_conn_t *conn, void *owner) {
    if (conn->watch_out || conn->fd < 0) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = owner};
    if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, conn->fd, &ev) == 0) conn->watch_out = true;
}

static void dp_kernel_close(dp_core_t *c, dp_conn_t *conn) {
    (void)c;
    if (conn->fd >= 0) close(conn->fd);
    conn->fd = -1;
}

static void dp_kernel_stop_listening(dp_core_t *c) {
    dp_listener_t *ls[] = {&c->est_listener, &c->capf_listener};
    for (size_t i = 0; i < 2; i++) {
        if (ls[i]->fd < 0) continue;
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, ls[i]->fd, NULL);
        close(ls[i]->fd);
        ls[i]->fd = -1;
    }
}

const dp_transport_ops_t dp_kernel_transport = {
    .name = "kernel",
    .setup = dp_kernel_setup,
    .run = dp_kernel_run,
    .recv = dp_kernel_recv,
    .send = dp_kernel_send,
    .close = dp_kernel_close,
    .watch_write = dp_kernel_watch_write,
    .stop_listening = dp_kernel_stop_listening,
};
