"""Runs the mqext extension (mq_* of the C library, no pipc) under
LD_PRELOAD=libpipc-preload.so: a queue of 50 messages, which the kernel refuses
beyond msg_max (10), a round trip through it, and one across fork that the parent
waits for with select(). Its storage in
/dev/shm shows that the queue is pipc's."""
import errno
import os
import select
import sys

import mqext

name = "/pymq_%d" % os.getpid()
storage = "/dev/shm/pipc.mq." + name[1:]
MAXMSG, MSGSIZE = 50, 256

q = mqext.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600, MAXMSG, MSGSIZE)
try:
    assert os.path.exists(storage), "no engine queue at " + storage
    assert mqext.getattr(q) == (0, MAXMSG, MSGSIZE, 0), mqext.getattr(q)

    for i in range(MAXMSG):
        mqext.send(q, b"message %d" % i, i % 7)
    assert mqext.getattr(q)[3] == MAXMSG
    got = [mqext.receive(q, MSGSIZE) for _ in range(MAXMSG)]
    want = sorted(((b"message %d" % i, i % 7) for i in range(MAXMSG)),
                  key=lambda m: (-m[1], int(m[0].split()[1])))
    assert got == want, got

    try:
        mqext.receive(q, MSGSIZE, 0.1)
        raise AssertionError("mq_timedreceive on an empty queue returned")
    except OSError as e:
        assert e.errno == errno.ETIMEDOUT, e

    assert mqext.set_nonblocking(q, True) == 0
    try:
        mqext.receive(q, MSGSIZE)
        raise AssertionError("non-blocking mq_receive on an empty queue returned")
    except OSError as e:
        assert e.errno == errno.EAGAIN, e
    mqext.set_nonblocking(q, False)

    child = os.fork()
    if child == 0:
        code = 1
        try:
            w = mqext.open(name, os.O_WRONLY)
            for i in range(3 * MAXMSG):
                mqext.send(w, b"from child %d" % i, 1)
            mqext.close(w)
            code = 0
        finally:
            os._exit(code)
    readable, _, _ = select.select([q], [], [], 20.0)  # the descriptor is an fd, as Linux's
    assert readable == [q], readable
    for i in range(3 * MAXMSG):
        assert mqext.receive(q, MSGSIZE, 20.0) == (b"from child %d" % i, 1)
    _, status = os.waitpid(child, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
finally:
    mqext.close(q)
    mqext.unlink(name)

assert not os.path.exists(storage)
try:
    mqext.unlink(name)
    raise AssertionError("second mq_unlink succeeded")
except OSError as e:
    assert e.errno == errno.ENOENT, e
print("test_mqext: ok (python %s, a %d-message queue on pipc's engine, round trip and fork)"
      % (sys.version.split()[0], MAXMSG))
