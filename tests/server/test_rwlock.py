"""The readers-writer lock: readers share, a writer is alone and is not starved."""

from __future__ import annotations

import threading

from faceobfuscator.server.rwlock import ReadWriteLock


def test_readers_share_the_lock():
    lock = ReadWriteLock()
    inside = threading.Barrier(3, timeout=5)

    def reader() -> None:
        with lock.read():
            inside.wait()  # all three hold the read lock at once, or this times out

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not inside.broken


def test_a_writer_excludes_readers_and_goes_before_new_ones():
    lock = ReadWriteLock()
    order: list[str] = []
    reading = threading.Event()
    release = threading.Event()

    def first_reader() -> None:
        with lock.read():
            reading.set()
            release.wait(5)
            order.append("reader 1 done")

    def writer() -> None:
        with lock.write():
            order.append("writer")

    def late_reader() -> None:
        with lock.read():
            order.append("reader 2")

    r1 = threading.Thread(target=first_reader)
    r1.start()
    reading.wait(5)
    w = threading.Thread(target=writer)
    w.start()
    while not lock._writers_waiting:  # the writer queues behind the first reader
        threading.Event().wait(0.001)
    r2 = threading.Thread(target=late_reader)
    r2.start()
    release.set()
    for t in (r1, w, r2):
        t.join(5)
    assert order == ["reader 1 done", "writer", "reader 2"]
