"""Hostile neighbours for the serving benchmark: slow-loris connections and clients sending the
largest bodies the server accepts to read, while a well-behaved client is timed (tools.bench_serving).

    with HostileLoad("127.0.0.1", 8000, slow_connections=50, big_body_clients=4, body_bytes=1 << 20):
        ...  # time the well-behaved client here
"""

from __future__ import annotations

import select
import socket
import threading
import time


class HostileLoad:
    def __init__(
        self, host: str, port: int, slow_connections: int, big_body_clients: int, body_bytes: int
    ) -> None:
        self.address = (host, port)
        self.slow_connections, self.big_body_clients, self.body_bytes = (
            slow_connections,
            big_body_clients,
            body_bytes,
        )
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.counts = {"slow_reconnects": 0, "big_bodies_sent": 0}

    def __enter__(self) -> HostileLoad:
        self.threads = [threading.Thread(target=self._slow_loris, daemon=True)]
        self.threads += [
            threading.Thread(target=self._big_bodies, daemon=True) for _ in range(self.big_body_clients)
        ]
        for thread in self.threads:
            thread.start()
        time.sleep(1.0)  # let the attack settle in before anything is timed
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _connect(self) -> socket.socket | None:
        try:
            return socket.create_connection(self.address, timeout=5)
        except OSError:
            return None

    def _slow_loris(self) -> None:
        """Keep `slow_connections` connections each sending one header byte a second; reconnect
        whenever the server cuts one off."""
        socks: list[socket.socket] = []
        while not self.stop.is_set():
            while len(socks) < self.slow_connections:
                sock = self._connect()
                if sock is None:
                    break
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
                socks.append(sock)
                self.counts["slow_reconnects"] += 1
            alive = []
            for sock in socks:
                try:
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable and not sock.recv(4096):
                        raise ConnectionResetError
                    sock.sendall(b"X")
                    alive.append(sock)
                except OSError:
                    sock.close()
            socks = alive
            self.stop.wait(1.0)
        for sock in socks:
            sock.close()

    def _big_bodies(self) -> None:
        """POST bodies of `body_bytes` (a long JSON list of numbers) as fast as they are answered."""
        body = b'{"rows": [' + b",".join([b"1"] * (self.body_bytes // 2 - 8)) + b"]}"
        head = "POST /predict/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        while not self.stop.is_set():
            sock = self._connect()
            if sock is None:
                self.stop.wait(0.1)
                continue
            try:
                sock.sendall(head.encode() + body)
                sock.recv(4096)
                self.counts["big_bodies_sent"] += 1
            except OSError:
                pass
            finally:
                sock.close()
