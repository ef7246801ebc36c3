/* The native stream loops (issue 17): load/stream.py's send_loop, paced_send_loop, sendfile_loop,
 * udp_send_loop, recv_loop and udp_recv_loop in C, called from their Python versions when the run's
 * engine is native (see vdevperf/load/native.py). Each does what its Python version does, call for call: the same
 * syscalls, the same counters published into the shared int64 slots after every call (counters.SLOTS
 * order; SLOTS below is checked against it by the tests), the same ENOBUFS handling, and the stop:
 * the endpoint's SIGUSR1 handler (Python, installed without SA_RESTART) raises StopLoad from
 * PyErr_CheckSignals(), called after every call, so a blocked send/recv (EINTR) and a loop that never
 * blocks both end within one call. Any other error raises OSError from errno, as Python's socket
 * calls do. The sender's shutdown(SHUT_WR) at the end stays in Python (stream._stop_sending).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>

#include "_native.h"

static const char *const slot_names[N_SLOTS] = {
    "bytes_sent",   "bytes_received", "messages_sent",  "messages_received", "transactions",
    "connections",  "errors",         "zerocopy_sends", "zerocopy_copied",   "jitter_sum_ns",
};

/* stream._STAMP: "=qQ", send time (CLOCK_MONOTONIC ns) and sequence number */
#define STAMP_BYTES 16

/* One loop's arguments: its socket, its slots, its buffer. */
typedef struct {
    int fd;
    Py_buffer view;
    volatile int64_t *slots; /* read by the parent while we write: every store must happen */
    char *buf;
    Py_ssize_t size;
} Loop;

/* The loop's slots from its parsed buffer: 0, or -1 with the view released and an exception set. */
static int loop_slots(Loop *loop) {
    loop->buf = NULL;
    if (loop->view.len < (Py_ssize_t)(N_SLOTS * sizeof(int64_t))) {
        PyBuffer_Release(&loop->view);
        PyErr_SetString(PyExc_ValueError, "slots too short");
        return -1;
    }
    loop->slots = (volatile int64_t *)loop->view.buf;
    return 0;
}

/* The loop's zeroed buffer of its parsed size, at least `least` bytes: 0, or -1 as loop_slots. */
static int loop_buffer(Loop *loop, Py_ssize_t least) {
    if (loop->size < least) {
        PyBuffer_Release(&loop->view);
        PyErr_SetString(PyExc_ValueError, "buffer too small");
        return -1;
    }
    loop->buf = calloc(1, (size_t)loop->size);
    if (loop->buf == NULL) {
        PyBuffer_Release(&loop->view);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* The arguments every loop takes, (fd, slots, size): 0, or -1 with an exception set. */
static int loop_open(PyObject *args, Loop *loop, Py_ssize_t least) {
    if (!PyArg_ParseTuple(args, "iw*n", &loop->fd, &loop->view, &loop->size)) {
        return -1;
    }
    return loop_slots(loop) < 0 ? -1 : loop_buffer(loop, least);
}

/* The loop's end: None, or NULL with the exception that ended it (StopLoad, OSError) set. */
static PyObject *loop_close(Loop *loop, int failed) {
    free(loop->buf);
    PyBuffer_Release(&loop->view);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* After a call that returned -1: 0 to go on (EINTR with no exception from the handlers), -1 to end
 * with the exception set (the handlers' StopLoad, or OSError from errno). */
static int interrupted(void) {
    if (errno == EINTR) {
        return PyErr_CheckSignals();
    }
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

/* udp_send_loop's stamp: the send time (CLOCK_MONOTONIC ns) and the sequence number, stream._STAMP. */
static inline void stamp(char *buf, int64_t calls) {
    int64_t now = clock_ns();
    uint64_t seq = (uint64_t)calls;
    memcpy(buf, &now, sizeof now);
    memcpy(buf + sizeof now, &seq, sizeof seq);
}

/* send_loop, and udp_send_loop (stamped): send size bytes per call until stopped. */
static PyObject *sender(PyObject *args, int stamped) {
    Loop loop;
    if (loop_open(args, &loop, stamped ? STAMP_BYTES : 1) < 0) {
        return NULL;
    }
    int64_t sent = 0, calls = 0, errors = 0;
    int failed = 0;
    for (;;) {
        if (stamped) {
            stamp(loop.buf, calls);
        }
        ssize_t n = send(loop.fd, loop.buf, (size_t)loop.size, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == ENOBUFS) { /* UDP: a queue below is full; the message is lost, not the test */
                errors += 1;
                loop.slots[ERRORS] = errors;
            } else if (interrupted() < 0) {
                failed = 1;
                break;
            }
        } else {
            sent += n;
            calls += 1;
            loop.slots[BYTES_SENT] = sent;
            loop.slots[MESSAGES_SENT] = calls;
        }
        if (PyErr_CheckSignals() < 0) { /* a send that never blocks (UDP) never sees EINTR */
            failed = 1;
            break;
        }
    }
    return loop_close(&loop, failed);
}

/* paced_send_loop (-b): sender()'s sends on stream.paced_send_loop's absolute schedule. A send of n
 * bytes moves `due` on by int(n * ns_per_byte); the loop sleeps (to due) only once it is more than
 * ahead_ns early, and forgives lag beyond lag_ns. A datagram lost to ENOBUFS still moves it on. */
static PyObject *paced_send_loop(PyObject *self, PyObject *args) {
    (void)self;
    Loop loop;
    int stamped;
    double ns_per_byte;
    long long ahead, lag;
    if (!PyArg_ParseTuple(args, "iw*npdLL", &loop.fd, &loop.view, &loop.size, &stamped, &ns_per_byte, &ahead,
                          &lag)) {
        return NULL;
    }
    if (loop_slots(&loop) < 0 || loop_buffer(&loop, stamped ? STAMP_BYTES : 1) < 0) {
        return NULL;
    }
    int64_t sent = 0, calls = 0, errors = 0;
    int failed = 0;
    int64_t due = clock_ns(); /* when the next byte may leave */
    for (;;) {
        if (PyErr_CheckSignals() < 0) { /* a sender behind its schedule never sleeps */
            failed = 1;
            break;
        }
        int64_t now = clock_ns();
        if (due - now > ahead) {
            if (sleep_until(due) < 0) {
                failed = 1;
                break;
            }
        } else if (now - due > lag) {
            due = now - lag;
        }
        if (stamped) {
            stamp(loop.buf, calls);
        }
        ssize_t n = send(loop.fd, loop.buf, (size_t)loop.size, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == ENOBUFS) {
                errors += 1;
                loop.slots[ERRORS] = errors;
                n = loop.size; /* the message is lost, but it was offered: the schedule moves on */
            } else if (interrupted() < 0) {
                failed = 1;
                break;
            } else {
                continue; /* EINTR with no exception: the send again, as Python retries it */
            }
        } else {
            sent += n;
            calls += 1;
            loop.slots[BYTES_SENT] = sent;
            loop.slots[MESSAGES_SENT] = calls;
        }
        due += (int64_t)((double)n * ns_per_byte); /* Python: int(n * ns_per_byte) */
    }
    return loop_close(&loop, failed);
}

/* sendfile_loop (TCP_SENDFILE): sendfile(2) size bytes from offset 0 of the file `in` per call, counted
 * as sender() counts its sends. The file is made, and the socket shut, in Python. */
static PyObject *sendfile_loop(PyObject *self, PyObject *args) {
    (void)self;
    Loop loop;
    int in;
    if (!PyArg_ParseTuple(args, "iw*ni", &loop.fd, &loop.view, &loop.size, &in)) {
        return NULL;
    }
    if (loop_slots(&loop) < 0) {
        return NULL;
    }
    int64_t sent = 0, calls = 0;
    int failed = 0;
    for (;;) {
        off_t offset = 0;
        ssize_t n = sendfile(loop.fd, in, &offset, (size_t)loop.size);
        if (n < 0) {
            if (interrupted() < 0) {
                failed = 1;
                break;
            }
        } else {
            sent += n;
            calls += 1;
            loop.slots[BYTES_SENT] = sent;
            loop.slots[MESSAGES_SENT] = calls;
        }
        if (PyErr_CheckSignals() < 0) {
            failed = 1;
            break;
        }
    }
    return loop_close(&loop, failed);
}

static PyObject *send_loop(PyObject *self, PyObject *args) {
    (void)self;
    return sender(args, 0);
}

static PyObject *udp_send_loop(PyObject *self, PyObject *args) {
    (void)self;
    return sender(args, 1);
}

/* One recv into the buffer: its length (0 at EOF), or -1 with the exception that ends the loop set. */
static ssize_t receive(Loop *loop) {
    for (;;) {
        ssize_t n = recv(loop->fd, loop->buf, (size_t)loop->size, 0);
        if (n >= 0) {
            return n;
        }
        if (interrupted() < 0) {
            return -1;
        }
    }
}

/* recv_loop: receive into one buffer until EOF; count bytes and calls. */
static PyObject *recv_loop(PyObject *self, PyObject *args) {
    (void)self;
    Loop loop;
    if (loop_open(args, &loop, 1) < 0) {
        return NULL;
    }
    int64_t received = 0, calls = 0;
    ssize_t n;
    while ((n = receive(&loop)) > 0) {
        received += n;
        calls += 1;
        loop.slots[BYTES_RECEIVED] = received;
        loop.slots[MESSAGES_RECEIVED] = calls;
        if (PyErr_CheckSignals() < 0) {
            n = -1;
            break;
        }
    }
    return loop_close(&loop, n < 0);
}

static inline int64_t sent_at(const Loop *loop) {
    int64_t at;
    memcpy(&at, loop->buf, sizeof at);
    return at;
}

/* udp_recv_loop: recv_loop plus RFC 3550 jitter of the transit times, inline as measure.jitter.step. */
static PyObject *udp_recv_loop(PyObject *self, PyObject *args) {
    (void)self;
    Loop loop;
    if (loop_open(args, &loop, STAMP_BYTES) < 0) {
        return NULL;
    }
    int64_t received = 0, calls = 0, jitter = 0, total = 0;
    ssize_t n = receive(&loop);
    if (n <= 0) {
        return loop_close(&loop, n < 0);
    }
    int64_t previous = clock_ns() - sent_at(&loop); /* the first datagram only sets the reference */
    for (;;) {
        received += n;
        calls += 1;
        loop.slots[BYTES_RECEIVED] = received;
        loop.slots[MESSAGES_RECEIVED] = calls;
        if (PyErr_CheckSignals() < 0) {
            n = -1;
            break;
        }
        n = receive(&loop);
        if (n <= 0) {
            break;
        }
        int64_t transit = clock_ns() - sent_at(&loop);
        int64_t d = transit - previous;
        previous = transit;
        jitter += ((d >= 0 ? d : -d) - jitter) >> 4; /* arithmetic shift: Python's floor, as in step() */
        total += jitter;
        loop.slots[JITTER_SUM_NS] = total;
    }
    return loop_close(&loop, n < 0);
}

static PyMethodDef methods[] = {
    {"send_loop", send_loop, METH_VARARGS, "send_loop(fd, slots, size): stream.send_loop's plain sends."},
    {"udp_send_loop", udp_send_loop, METH_VARARGS, "udp_send_loop(fd, slots, size): stamped datagrams."},
    {"paced_send_loop", paced_send_loop, METH_VARARGS,
     "paced_send_loop(fd, slots, size, stamped, ns_per_byte, ahead_ns, lag_ns): -b's sends on a schedule."},
    {"sendfile_loop", sendfile_loop, METH_VARARGS, "sendfile_loop(fd, slots, size, in_fd): TCP_SENDFILE's sends."},
    {"recv_loop", recv_loop, METH_VARARGS, "recv_loop(fd, slots, size): receive until EOF."},
    {"udp_recv_loop", udp_recv_loop, METH_VARARGS, "udp_recv_loop(fd, slots, size): with RFC 3550 jitter."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native_stream", "Native stream loops.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native_stream(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    PyObject *slots = PyTuple_New(N_SLOTS);
    if (slots == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < N_SLOTS; i++) {
        PyObject *name = PyUnicode_FromString(slot_names[i]);
        if (name == NULL) {
            Py_DECREF(slots);
            Py_DECREF(m);
            return NULL;
        }
        PyTuple_SET_ITEM(slots, i, name);
    }
    if (PyModule_AddObject(m, "SLOTS", slots) < 0) {
        Py_DECREF(slots);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "STAMP_BYTES", STAMP_BYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
