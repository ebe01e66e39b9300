"""The machine's reference for snapshot transfer: raw ``sendfile`` over loopback TCP.

Rule: a file of ``nbytes`` (in the page cache, as a fresh snapshot is) is sent with
``os.sendfile`` to a receiver thread that reads into one reused buffer; the rate is bytes
over the time from the first send to the last byte received.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time


def sendfile_throughput(nbytes: int) -> float:
    """Bytes per second of one loopback sendfile of ``nbytes``."""
    with tempfile.TemporaryFile() as f:
        chunk = os.urandom(1 << 20)
        left = nbytes
        while left > 0:
            left -= f.write(chunk[: min(left, len(chunk))])
        f.flush()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        received = [0]
        done = threading.Event()

        def receive() -> None:
            conn, _ = listener.accept()
            buf = bytearray(1 << 20)
            with conn:
                while received[0] < nbytes:
                    n = conn.recv_into(buf)
                    if not n:
                        break
                    received[0] += n
            done.set()

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        with socket.create_connection(listener.getsockname()) as out:
            start = time.perf_counter()
            offset = 0
            while offset < nbytes:
                offset += os.sendfile(out.fileno(), f.fileno(), offset, nbytes - offset)
            done.wait(30.0)
            elapsed = time.perf_counter() - start
        listener.close()
        thread.join(1.0)
        return received[0] / elapsed if elapsed > 0 else 0.0
