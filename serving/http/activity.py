"""How busy the server is, readable from another process: requests in flight and when that count
last changed, in 16 bytes of shared memory (a memfd) that the server writes as requests come and
go and its shadow replayer reads (serving/http/shadow_replayer.py).

Why: a replay is inference work. On a VM's vCPUs even an idle-priority process competes with the
server for the host's cores, so the replayer starts one only once the server has had no request
in flight for `quiet_s`; under sustained load it compares nothing and its queue drops instead.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
import time

LAYOUT = struct.Struct("<qd")  # requests in flight, time.monotonic() of the last change


class Activity:
    def __init__(self, fd: int | None = None) -> None:
        """A new shared record (the server), or the one behind `fd` (the replayer)."""
        created = fd is None
        if created:
            fd = _shared_file()
            os.ftruncate(fd, LAYOUT.size)
        self.fd = fd
        self._map = mmap.mmap(fd, LAYOUT.size)
        if created:
            self.publish(0)

    def publish(self, in_flight: int) -> None:
        """The server's count of requests in flight, just changed (only the server writes)."""
        LAYOUT.pack_into(self._map, 0, in_flight, time.monotonic())

    def quiet_for(self) -> float:
        """Seconds since the server last had a request in flight (0 while it has one)."""
        in_flight, changed = LAYOUT.unpack_from(self._map, 0)
        return 0.0 if in_flight else max(time.monotonic() - changed, 0.0)


def _shared_file() -> int:
    try:
        return os.memfd_create("onnxship-activity")  # Linux: memory only, no file anywhere
    except (AttributeError, OSError):
        handle, path = tempfile.mkstemp(prefix="onnxship-activity-")
        os.unlink(path)  # open, nameless: gone with the last process holding it
        return handle
