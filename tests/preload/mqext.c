/* mqext: a Python extension module that calls the C library's mq_* (<mqueue.h>,
 * -lrt) and knows nothing of pipc. test_mqext.py loads it into a Python run under
 * LD_PRELOAD=libpipc-preload.so, the way a binding such as posix_ipc would be. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdlib.h>
#include <time.h>

/* open(name, flags, mode=0o600, maxmsg=0, msgsize=0) -> descriptor; attributes only
 * with O_CREAT and maxmsg > 0. */
static PyObject* mqext_open(PyObject* self, PyObject* args) {
  (void)self;
  const char* name;
  int flags;
  unsigned mode = 0600;
  long maxmsg = 0, msgsize = 0;
  if (!PyArg_ParseTuple(args, "si|Ill", &name, &flags, &mode, &maxmsg, &msgsize)) return NULL;
  mqd_t q;
  if ((flags & O_CREAT) != 0) {
    struct mq_attr attr = {0};
    attr.mq_maxmsg = maxmsg;
    attr.mq_msgsize = msgsize;
    q = mq_open(name, flags, (mode_t)mode, maxmsg > 0 ? &attr : NULL);
  } else {
    q = mq_open(name, flags);
  }
  if (q == (mqd_t)-1) return PyErr_SetFromErrnoWithFilename(PyExc_OSError, name);
  return PyLong_FromLong((long)q);
}

static PyObject* mqext_close(PyObject* self, PyObject* args) {
  (void)self;
  int q;
  if (!PyArg_ParseTuple(args, "i", &q)) return NULL;
  if (mq_close((mqd_t)q) != 0) return PyErr_SetFromErrno(PyExc_OSError);
  Py_RETURN_NONE;
}

static PyObject* mqext_unlink(PyObject* self, PyObject* args) {
  (void)self;
  const char* name;
  if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
  if (mq_unlink(name) != 0) return PyErr_SetFromErrnoWithFilename(PyExc_OSError, name);
  Py_RETURN_NONE;
}

/* send(q, data, priority) */
static PyObject* mqext_send(PyObject* self, PyObject* args) {
  (void)self;
  int q;
  const char* data;
  Py_ssize_t size;
  unsigned prio;
  if (!PyArg_ParseTuple(args, "iy#I", &q, &data, &size, &prio)) return NULL;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = mq_send((mqd_t)q, data, (size_t)size, prio);
  Py_END_ALLOW_THREADS
  if (rc != 0) return PyErr_SetFromErrno(PyExc_OSError);
  Py_RETURN_NONE;
}

/* receive(q, capacity, timeout=None) -> (bytes, priority); a timeout in seconds
 * makes it mq_timedreceive. */
static PyObject* mqext_receive(PyObject* self, PyObject* args) {
  (void)self;
  int q;
  Py_ssize_t capacity;
  PyObject* timeout = Py_None;
  if (!PyArg_ParseTuple(args, "in|O", &q, &capacity, &timeout)) return NULL;
  struct timespec deadline;
  if (timeout != Py_None) {
    double seconds = PyFloat_AsDouble(timeout);
    if (seconds == -1.0 && PyErr_Occurred()) return NULL;
    clock_gettime(CLOCK_REALTIME, &deadline);
    long long ns = (long long)deadline.tv_nsec + (long long)(seconds * 1e9);
    deadline.tv_sec += (time_t)(ns / 1000000000LL);
    deadline.tv_nsec = (long)(ns % 1000000000LL);
  }
  char* buffer = malloc((size_t)capacity);
  if (buffer == NULL) return PyErr_NoMemory();
  unsigned prio = 0;
  ssize_t got;
  Py_BEGIN_ALLOW_THREADS
  got = timeout == Py_None ? mq_receive((mqd_t)q, buffer, (size_t)capacity, &prio)
                           : mq_timedreceive((mqd_t)q, buffer, (size_t)capacity, &prio, &deadline);
  Py_END_ALLOW_THREADS
  if (got < 0) {
    free(buffer);
    return PyErr_SetFromErrno(PyExc_OSError);
  }
  PyObject* result = Py_BuildValue("(y#I)", buffer, (Py_ssize_t)got, prio);
  free(buffer);
  return result;
}

/* getattr(q) -> (flags, maxmsg, msgsize, curmsgs) */
static PyObject* mqext_getattr(PyObject* self, PyObject* args) {
  (void)self;
  int q;
  if (!PyArg_ParseTuple(args, "i", &q)) return NULL;
  struct mq_attr attr;
  if (mq_getattr((mqd_t)q, &attr) != 0) return PyErr_SetFromErrno(PyExc_OSError);
  return Py_BuildValue("(llll)", (long)attr.mq_flags, (long)attr.mq_maxmsg, (long)attr.mq_msgsize,
                       (long)attr.mq_curmsgs);
}

/* set_nonblocking(q, on) -> the previous flags */
static PyObject* mqext_set_nonblocking(PyObject* self, PyObject* args) {
  (void)self;
  int q, on;
  if (!PyArg_ParseTuple(args, "ip", &q, &on)) return NULL;
  struct mq_attr attr = {0}, old;
  attr.mq_flags = on ? O_NONBLOCK : 0;
  if (mq_setattr((mqd_t)q, &attr, &old) != 0) return PyErr_SetFromErrno(PyExc_OSError);
  return PyLong_FromLong((long)old.mq_flags);
}

static PyMethodDef mqext_methods[] = {
    {"open", mqext_open, METH_VARARGS, "mq_open"},
    {"close", mqext_close, METH_VARARGS, "mq_close"},
    {"unlink", mqext_unlink, METH_VARARGS, "mq_unlink"},
    {"send", mqext_send, METH_VARARGS, "mq_send"},
    {"receive", mqext_receive, METH_VARARGS, "mq_receive or mq_timedreceive"},
    {"getattr", mqext_getattr, METH_VARARGS, "mq_getattr"},
    {"set_nonblocking", mqext_set_nonblocking, METH_VARARGS, "mq_setattr"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mqext_module = {
    PyModuleDef_HEAD_INIT, "mqext", "POSIX message queues through the C library's mq_*", -1, mqext_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_mqext(void) { return PyModule_Create(&mqext_module); }
