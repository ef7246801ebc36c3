/* The native RR loops (issue 17): C versions of load/rr.py's request_loop, paced_request_loop (--rate),
 * burst_request_loop, response_loop, crr_request_loop and crr_response_loop, called through small shims there (see
 * load/native.py).
 *
 * Each does what its Python loop does, in the same order: the same syscalls (read/write on the fd, as
 * os.readv/os.write), the same CLOCK_MONOTONIC reads (time.perf_counter_ns's clock), the
 * counters published into the same int64 slots at the same moments (the Python loops' `finally:`
 * writes included), the histogram bucket computed inline as in measure/histogram.py.
 *
 * Stopping: SIGUSR1's Python handler raises StopLoad. Python installs it without SA_RESTART, so a
 * blocking syscall returns EINTR; PyErr_CheckSignals() then runs the handler, and its exception leaves
 * the loop (after the final counters are published) as it leaves the Python loop. A signal that lands
 * between two syscalls is caught by the PyErr_CheckSignals() at the top of every iteration (a flag
 * read). The GIL is kept: an endpoint is a single-threaded process.
 *
 * A client loop that sees its peer close returns True and the Python shim raises the LoadError the
 * Python loop raises; other socket errors become the OSError subclass Python would raise.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "_native.h"

/* measure/histogram.py: SUB_BITS, HALF_BITS, BUCKETS. */
#define SUB_BITS 8
#define HALF_BITS (SUB_BITS - 1)
#define BUCKETS (((64 - SUB_BITS) << HALF_BITS) + (1 << SUB_BITS))

/* A read that timed out (SO_RCVTIMEO: a lost UDP datagram); distinct from -1 (Python error set). */
#define TIMED_OUT (-2)

/* The parent reads the slots while the loop runs: every publication is a real store. */
static inline void publish(int64_t *slots, int slot, int64_t value) {
    __atomic_store_n(&slots[slot], value, __ATOMIC_RELAXED);
}

/* measure.histogram.index of v >= 0 (a monotonic clock's difference). */
static inline int64_t bucket(int64_t v) {
    uint64_t u = (uint64_t)v;
    int m = u ? 64 - __builtin_clzll(u) : 0;
    return m <= SUB_BITS ? (int64_t)u : ((int64_t)(m - SUB_BITS) << HALF_BITS) + (int64_t)(u >> (m - SUB_BITS));
}

static inline void record(int64_t *hist, int64_t v) { hist[bucket(v)] += 1; }

PyDoc_STRVAR(index_doc, "index(value_ns) -> int\n\nThe loops' histogram bucket of a latency, for the tests.");

static PyObject *index_(PyObject *self, PyObject *arg) {
    (void)self;
    long long v = PyLong_AsLongLong(arg);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    if (v < 0) {
        PyErr_SetString(PyExc_ValueError, "a latency is not negative");
        return NULL;
    }
    return PyLong_FromLongLong(bucket(v));
}

/* One read, as os.readv: retried after EINTR when no signal handler raised. Returns the bytes read,
 * TIMED_OUT on EAGAIN if `timeout_ok` (else it is an error), or -1 with a Python exception set. */
static Py_ssize_t read_once(int fd, char *buf, size_t len, int timeout_ok) {
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR) {
            if (PyErr_CheckSignals() < 0)
                return -1;
            continue;
        }
        if (timeout_ok && (errno == EAGAIN || errno == EWOULDBLOCK))
            return TIMED_OUT;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
}

/* One write, as os.write (a partial write is not completed, as there). 0, or -1 with an exception set. */
static int write_once(int fd, const char *buf, size_t len) {
    for (;;) {
        if (write(fd, buf, len) >= 0)
            return 0;
        if (errno == EINTR) {
            if (PyErr_CheckSignals() < 0)
                return -1;
            continue;
        }
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
}

/* socket.sendall: every byte, retrying partial writes. 0, or -1 with an exception set. */
static int write_all(int fd, const char *buf, size_t len) {
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    return -1;
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* rr._fill: finish a partially received message. Returns `want`, 0 at EOF, or -1 with an exception set. */
static Py_ssize_t fill(int fd, char *buf, Py_ssize_t have, Py_ssize_t want) {
    while (have < want) {
        Py_ssize_t n = read_once(fd, buf + have, (size_t)(want - have), 0);
        if (n < 0)
            return -1;
        if (!n)
            return 0;
        have += n;
    }
    return have;
}

/* Is this exception the peer going away (ConnectionResetError, BrokenPipeError, ConnectionRefusedError)? */
static int peer_gone(void) {
    return PyErr_ExceptionMatches(PyExc_ConnectionResetError) || PyErr_ExceptionMatches(PyExc_BrokenPipeError) ||
           PyErr_ExceptionMatches(PyExc_ConnectionRefusedError);
}

/* The counters and histogram buffers, checked for size (memoryviews cast to "q"). */
static int check_buffers(Py_buffer *slots, Py_buffer *hist) {
    if (slots->len < (Py_ssize_t)(N_SLOTS * sizeof(int64_t))) {
        PyErr_SetString(PyExc_ValueError, "slots buffer too small");
        return -1;
    }
    if (hist && hist->len < (Py_ssize_t)(BUCKETS * sizeof(int64_t))) {
        PyErr_SetString(PyExc_ValueError, "histogram buffer too small");
        return -1;
    }
    return 0;
}

static int check_sizes(Py_ssize_t a, Py_ssize_t b) {
    if (a < 0 || b < 0) {
        PyErr_SetString(PyExc_ValueError, "negative message size");
        return -1;
    }
    return 0;
}

/* The result of a client loop: NULL (exception), or whether the server closed the connection. */
static PyObject *client_result(int failed, int closed) {
    if (failed)
        return NULL;
    return PyBool_FromLong(closed);
}

PyDoc_STRVAR(request_loop_doc, "request_loop(fd, slots, hist, request_size, response_size) -> closed: bool\n\n"
                               "rr.request_loop's loop; returns True when the server closed the connection.");

static PyObject *request_loop(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer sb, hb;
    Py_ssize_t req, want;
    (void)self;
    if (!PyArg_ParseTuple(args, "iw*w*nn", &fd, &sb, &hb, &req, &want))
        return NULL;
    int failed = 0, closed = 0;
    char *request = NULL, *buf = NULL;
    int64_t *slots = sb.buf, *hist = hb.buf;
    int64_t done = 0, lost = 0;
    if (check_buffers(&sb, &hb) < 0 || check_sizes(req, want) < 0) {
        failed = 1;
        goto out;
    }
    request = calloc((size_t)req + 1, 1);
    buf = malloc((size_t)want + 1);
    if (!request || !buf) {
        PyErr_NoMemory();
        failed = 1;
        goto out;
    }
    int64_t prev = clock_ns();
    if (write_once(fd, request, (size_t)req) < 0)
        goto fail;
    for (;;) {
        if (PyErr_CheckSignals() < 0)
            goto fail;
        Py_ssize_t n = read_once(fd, buf, (size_t)want, 1);
        if (n == TIMED_OUT) { /* UDP receive timeout: the request or its response was lost */
            publish(slots, ERRORS, ++lost);
            prev = clock_ns();
            if (write_once(fd, request, (size_t)req) < 0)
                goto fail;
            continue;
        }
        if (n < 0)
            goto fail;
        if (n != want) {
            Py_ssize_t got = fill(fd, buf, n, want);
            if (got < 0)
                goto fail;
            if (got != want) {
                closed = 1;
                break;
            }
        }
        int64_t now = clock_ns();
        if (write_once(fd, request, (size_t)req) < 0)
            goto fail;
        record(hist, now - prev);
        prev = now;
        publish(slots, TRANSACTIONS, ++done);
    }
    goto published;
fail:
    failed = 1;
published:
    publish(slots, BYTES_SENT, done * req);
    publish(slots, BYTES_RECEIVED, done * want);
out:
    free(request);
    free(buf);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&hb);
    return client_result(failed, closed);
}

PyDoc_STRVAR(paced_request_loop_doc,
             "paced_request_loop(fd, slots, hist, request_size, response_size, period_ns) -> closed: bool\n\n"
             "rr.paced_request_loop's loop (--rate); returns True when the server closed the connection.");

static PyObject *paced_request_loop(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer sb, hb;
    Py_ssize_t req, want;
    double period;
    (void)self;
    if (!PyArg_ParseTuple(args, "iw*w*nnd", &fd, &sb, &hb, &req, &want, &period))
        return NULL;
    int failed = 0, closed = 0;
    char *request = NULL, *buf = NULL;
    int64_t *slots = sb.buf, *hist = hb.buf;
    int64_t done = 0, lost = 0;
    if (check_buffers(&sb, &hb) < 0 || check_sizes(req, want) < 0) {
        failed = 1;
        goto out;
    }
    request = calloc((size_t)req + 1, 1);
    buf = malloc((size_t)want + 1);
    if (!request || !buf) {
        PyErr_NoMemory();
        failed = 1;
        goto out;
    }
    int64_t start = clock_ns();
    for (;;) {
        if (PyErr_CheckSignals() < 0)
            goto fail;
        int64_t due = start + (int64_t)((double)(done + lost) * period); /* Python: int(k * period) */
        if (due > clock_ns() && sleep_until(due) < 0)
            goto fail;
        if (write_once(fd, request, (size_t)req) < 0)
            goto fail;
        Py_ssize_t n = read_once(fd, buf, (size_t)want, 1);
        if (n == TIMED_OUT) { /* UDP receive timeout: the request or its response was lost */
            publish(slots, ERRORS, ++lost);
            continue;
        }
        if (n < 0)
            goto fail;
        if (n != want) {
            Py_ssize_t got = fill(fd, buf, n, want);
            if (got < 0)
                goto fail;
            if (got != want) {
                closed = 1;
                break;
            }
        }
        record(hist, clock_ns() - due);
        publish(slots, TRANSACTIONS, ++done);
    }
    goto published;
fail:
    failed = 1;
published:
    publish(slots, BYTES_SENT, done * req);
    publish(slots, BYTES_RECEIVED, done * want);
out:
    free(request);
    free(buf);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&hb);
    return client_result(failed, closed);
}

PyDoc_STRVAR(burst_request_loop_doc,
             "burst_request_loop(fd, slots, hist, request_size, response_size, burst) -> closed: bool\n\n"
             "rr.burst_request_loop's loop; returns True when the server closed the connection.");

static PyObject *burst_request_loop(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer sb, hb;
    Py_ssize_t req, want, inflight;
    (void)self;
    if (!PyArg_ParseTuple(args, "iw*w*nnn", &fd, &sb, &hb, &req, &want, &inflight))
        return NULL;
    int failed = 0, closed = 0;
    char *requests = NULL, *buf = NULL;
    int64_t *sent = NULL;
    int64_t *slots = sb.buf, *hist = hb.buf;
    int64_t done = 0, lost = 0, carried = 0, jitter = 0, total = 0, prev = 0;
    if (check_buffers(&sb, &hb) < 0 || check_sizes(req, want) < 0) {
        failed = 1;
        goto out;
    }
    if (inflight < 1 || want < 1) {
        PyErr_SetString(PyExc_ValueError, "burst and response size must be at least 1");
        failed = 1;
        goto out;
    }
    requests = calloc((size_t)(inflight * req) + 1, 1); /* TCP: k requests in one write */
    buf = malloc((size_t)(inflight * want));            /* never more than N responses are outstanding */
    sent = calloc((size_t)inflight, sizeof(int64_t));   /* send times, a ring: sent[oldest] is next */
    if (!requests || !buf || !sent) {
        PyErr_NoMemory();
        failed = 1;
        goto out;
    }
    Py_ssize_t oldest = 0, last = inflight - 1;
    for (Py_ssize_t i = 0; i < inflight; i++) { /* one message each: over UDP a write is a datagram */
        sent[i] = clock_ns();
        if (write_once(fd, requests, (size_t)req) < 0)
            goto fail;
    }
    for (;;) {
        if (PyErr_CheckSignals() < 0)
            goto fail;
        Py_ssize_t n = read_once(fd, buf, (size_t)(inflight * want), 1);
        if (n == TIMED_OUT) { /* UDP receive timeout: every transaction in flight was lost */
            lost += inflight;
            publish(slots, ERRORS, lost);
            for (Py_ssize_t i = 0; i < inflight; i++) {
                sent[i] = clock_ns();
                if (write_once(fd, requests, (size_t)req) < 0)
                    goto fail;
            }
            oldest = 0;
            continue;
        }
        if (n < 0)
            goto fail;
        int64_t now = clock_ns();
        int64_t k;
        if (n == want && !carried) { /* one whole response: every UDP one, most TCP ones */
            if (write_once(fd, requests, (size_t)req) < 0)
                goto fail;
            k = 1;
        } else {
            if (!n) {
                closed = 1;
                break;
            }
            carried += n;
            k = carried / want;
            carried %= want;
            if (!k)
                continue;
            if (write_once(fd, requests, (size_t)(k * req)) < 0)
                goto fail;
        }
        done += k;
        while (k) {
            k--;
            int64_t v = now - sent[oldest];
            sent[oldest] = now;
            oldest = oldest < last ? oldest + 1 : 0;
            record(hist, v);
            int64_t d = v - prev;
            prev = v;
            jitter += ((d >= 0 ? d : -d) - jitter) >> 4; /* arithmetic shift: Python's floor >> */
            total += jitter;
        }
        publish(slots, TRANSACTIONS, done);
        publish(slots, JITTER_SUM_NS, total);
    }
    goto published;
fail:
    failed = 1;
published:
    publish(slots, BYTES_SENT, done * req);
    publish(slots, BYTES_RECEIVED, done * want);
out:
    free(requests);
    free(buf);
    free(sent);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&hb);
    return client_result(failed, closed);
}

PyDoc_STRVAR(response_loop_doc, "response_loop(fd, slots, request_size, response_size) -> None\n\n"
                                "rr.response_loop: serve until the client closes or goes away, or a signal.");

static PyObject *response_loop(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer sb;
    Py_ssize_t want, resp;
    (void)self;
    if (!PyArg_ParseTuple(args, "iw*nn", &fd, &sb, &want, &resp))
        return NULL;
    int failed = 0;
    char *response = NULL, *buf = NULL;
    int64_t *slots = sb.buf;
    int64_t done = 0;
    if (check_buffers(&sb, NULL) < 0 || check_sizes(want, resp) < 0) {
        PyBuffer_Release(&sb);
        return NULL;
    }
    response = calloc((size_t)resp + 1, 1);
    buf = malloc((size_t)want + 1);
    if (!response || !buf) {
        PyErr_NoMemory();
        failed = 1;
        goto out;
    }
    /* Work is counted at the client; the server's total is stored once, at the end. */
    for (;;) {
        if (PyErr_CheckSignals() < 0)
            goto fail;
        Py_ssize_t n = read_once(fd, buf, (size_t)want, 0);
        if (n < 0)
            goto fail;
        if (n != want) {
            Py_ssize_t got = fill(fd, buf, n, want);
            if (got < 0)
                goto fail;
            if (got != want)
                break;
        }
        if (write_once(fd, response, (size_t)resp) < 0)
            goto fail;
        done++;
    }
    goto published;
fail:
    /* The client stopped with a response unread (TCP: reset; UDP: port unreachable): the normal end. */
    if (peer_gone())
        PyErr_Clear();
    else
        failed = 1;
published:
    publish(slots, TRANSACTIONS, done);
    publish(slots, BYTES_RECEIVED, done * want);
    publish(slots, BYTES_SENT, done * resp);
out:
    free(response);
    free(buf);
    PyBuffer_Release(&sb);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

/* The server's address of crr_request_loop, as socket.connect((host, port)) builds it. */
typedef union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} peer_addr;

static int peer_address(int family, const char *host, int port, unsigned int scope_id, peer_addr *to,
                        socklen_t *len) {
    memset(to, 0, sizeof(*to));
    int ok = 0;
    if (family == AF_INET) {
        to->in4.sin_family = AF_INET;
        to->in4.sin_port = htons((uint16_t)port);
        ok = inet_pton(AF_INET, host, &to->in4.sin_addr) == 1;
        *len = sizeof(to->in4);
    } else if (family == AF_INET6) {
        to->in6.sin6_family = AF_INET6;
        to->in6.sin6_port = htons((uint16_t)port);
        to->in6.sin6_scope_id = scope_id;
        ok = inet_pton(AF_INET6, host, &to->in6.sin6_addr) == 1;
        *len = sizeof(to->in6);
    }
    if (!ok || port < 0 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "not a numeric address of family %d: %s port %d", family, host, port);
        return -1;
    }
    return 0;
}

/* The client's socket options, as roles.client_role's new_socket sets them (-1 / NULL: not given). */
typedef struct {
    int sndbuf, rcvbuf, nodelay;
    const char *cc;
    Py_ssize_t cc_len;
} client_options;

/* A new TCP socket with the options, connected to `to`, as ctx.connect(): its fd, or -1 with an exception
 * set (the fd closed). A connect() interrupted by a signal whose handler does not raise goes on in the
 * kernel: wait for it and take its result, as CPython's sock.connect does. */
static int crr_connect(int family, const client_options *o, const peer_addr *to, socklen_t len) {
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int one = 1;
    if ((o->sndbuf >= 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o->sndbuf, sizeof(o->sndbuf)) < 0) ||
        (o->rcvbuf >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof(o->rcvbuf)) < 0) ||
        (o->cc && setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, o->cc, (socklen_t)o->cc_len) < 0) ||
        (o->nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0))
        goto error;
    if (connect(fd, &to->sa, len) == 0)
        return fd;
    if (errno != EINTR)
        goto error;
    for (;;) {
        if (PyErr_CheckSignals() < 0)
            goto raised;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r = poll(&p, 1, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            goto error;
        }
        int err = 0;
        socklen_t elen = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
            goto error;
        if (!err)
            return fd;
        errno = err;
        goto error;
    }
error:
    PyErr_SetFromErrno(PyExc_OSError);
raised:
    close(fd);
    return -1;
}

PyDoc_STRVAR(crr_request_loop_doc,
             "crr_request_loop(family, host, port, scope_id, slots, hist, request_size, response_size, sndbuf, "
             "rcvbuf, cc, nodelay) -> closed: bool\n\n"
             "rr.crr_request_loop's loop: a new connection per transaction, with the client's socket options\n"
             "(sndbuf/rcvbuf -1: not set; cc: bytes or None); True when a server closed before responding.");

static PyObject *crr_request_loop(PyObject *self, PyObject *args) {
    int family, port, nodelay;
    unsigned int scope_id;
    const char *host;
    Py_buffer sb, hb;
    Py_ssize_t req, want;
    client_options o = {.cc = NULL, .cc_len = 0};
    (void)self;
    if (!PyArg_ParseTuple(args, "isiIw*w*nniiz#p", &family, &host, &port, &scope_id, &sb, &hb, &req, &want,
                          &o.sndbuf, &o.rcvbuf, &o.cc, &o.cc_len, &nodelay))
        return NULL;
    o.nodelay = nodelay;
    int failed = 0, closed = 0;
    char *request = NULL, *buf = NULL;
    int64_t *slots = sb.buf, *hist = hb.buf;
    int64_t done = 0;
    peer_addr to;
    socklen_t len = 0;
    if (check_buffers(&sb, &hb) < 0 || check_sizes(req, want) < 0 ||
        peer_address(family, host, port, scope_id, &to, &len) < 0) {
        failed = 1;
        goto out;
    }
    request = calloc((size_t)req + 1, 1);
    buf = malloc((size_t)want + 1); /* Python: bytearray(max(want, 1)) */
    if (!request || !buf) {
        PyErr_NoMemory();
        failed = 1;
        goto out;
    }
    int64_t prev = clock_ns();
    for (;;) {
        if (PyErr_CheckSignals() < 0)
            goto fail;
        int fd = crr_connect(family, &o, &to, len);
        if (fd < 0)
            goto fail;
        int bad = write_all(fd, request, (size_t)req) < 0;
        if (!bad) {
            Py_ssize_t n = read_once(fd, buf, (size_t)want + (want == 0), 0);
            if (n >= 0 && n != want)
                n = fill(fd, buf, n, want);
            if (n < 0)
                bad = 1;
            else if (n != want)
                closed = 1;
            else if (read_once(fd, buf, (size_t)want + (want == 0), 0) < 0) /* the server's FIN */
                bad = 1;
        }
        close(fd);
        if (bad)
            goto fail;
        if (closed)
            break;
        int64_t now = clock_ns();
        record(hist, now - prev);
        prev = now;
        ++done;
        publish(slots, TRANSACTIONS, done);
        publish(slots, CONNECTIONS, done);
    }
    goto published;
fail:
    failed = 1;
published:
    publish(slots, BYTES_SENT, done * req);
    publish(slots, BYTES_RECEIVED, done * want);
out:
    free(request);
    free(buf);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&hb);
    return client_result(failed, closed);
}

PyDoc_STRVAR(crr_response_loop_doc, "crr_response_loop(listen_fd, slots, request_size, response_size) -> None\n\n"
                                    "rr.crr_response_loop: accept, read, respond, close; until a signal.");

static PyObject *crr_response_loop(PyObject *self, PyObject *args) {
    int lfd;
    Py_buffer sb;
    Py_ssize_t want, resp;
    (void)self;
    if (!PyArg_ParseTuple(args, "iw*nn", &lfd, &sb, &want, &resp))
        return NULL;
    int failed = 0;
    char *response = NULL, *buf = NULL;
    int64_t *slots = sb.buf;
    int64_t accepted = 0, done = 0;
    if (check_buffers(&sb, NULL) < 0 || check_sizes(want, resp) < 0) {
        PyBuffer_Release(&sb);
        return NULL;
    }
    response = calloc((size_t)resp + 1, 1);
    buf = malloc((size_t)want + 1);
    if (!response || !buf) {
        PyErr_NoMemory();
        failed = 1;
        goto out;
    }
    for (;;) {
        if (PyErr_CheckSignals() < 0)
            goto fail;
        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EINTR)
                continue; /* the check above runs the handler */
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        publish(slots, CONNECTIONS, ++accepted);
        int bad = 0;
        Py_ssize_t n = read_once(conn, buf, (size_t)want, 0);
        if (n < 0)
            bad = 1;
        else if (n != want) {
            Py_ssize_t got = fill(conn, buf, n, want);
            if (got < 0)
                bad = 1;
            else if (got != want)
                n = -1; /* EOF before a whole request: nothing to answer */
            else
                n = want;
        }
        if (!bad && n == want) {
            if (write_all(conn, response, (size_t)resp) < 0)
                bad = 1;
            else
                publish(slots, TRANSACTIONS, ++done);
        }
        close(conn);
        if (bad) {
            /* The client went away mid-transaction (stopped): not counted. */
            if (!PyErr_ExceptionMatches(PyExc_ConnectionResetError) && !PyErr_ExceptionMatches(PyExc_BrokenPipeError))
                goto fail;
            PyErr_Clear();
        }
    }
fail:
    failed = 1;
    publish(slots, BYTES_RECEIVED, done * want);
    publish(slots, BYTES_SENT, done * resp);
out:
    free(response);
    free(buf);
    PyBuffer_Release(&sb);
    return failed ? NULL : Py_NewRef(Py_None);
}

static PyMethodDef methods[] = {
    {"index", index_, METH_O, index_doc},
    {"request_loop", request_loop, METH_VARARGS, request_loop_doc},
    {"paced_request_loop", paced_request_loop, METH_VARARGS, paced_request_loop_doc},
    {"burst_request_loop", burst_request_loop, METH_VARARGS, burst_request_loop_doc},
    {"response_loop", response_loop, METH_VARARGS, response_loop_doc},
    {"crr_request_loop", crr_request_loop, METH_VARARGS, crr_request_loop_doc},
    {"crr_response_loop", crr_response_loop, METH_VARARGS, crr_response_loop_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_native_rr",
    .m_doc = "Native rr loops (see load/rr.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__native_rr(void) { return PyModule_Create(&module); }
