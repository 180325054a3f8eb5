"""A small TCP proxy that puts network faults between the app and a server (Redis, Stripe).

Modes, switchable at any time:
- PASS: bytes flow both ways;
- DELAY: every chunk waits `delay_ms` (give or take `jitter_ms`) before it is forwarded (a
  slow network or server);
- DROP: new connections are accepted and reset at once (a refused or crashed server);
- BLACKHOLE: connections are accepted but nothing is forwarded either way (a partition:
  the client only finds out through its own timeout).
`cut()` resets every open connection once (a failover, a load balancer dropping idle links).
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from enum import Enum


class Mode(Enum):
    PASS = "pass"
    DELAY = "delay"
    DROP = "drop"
    BLACKHOLE = "blackhole"


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN: the peer sees 'connection reset', as in a real cut."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, *, mode: Mode = Mode.PASS,
                 delay_ms: int = 0, jitter_ms: int = 0) -> None:
        self.target = (target_host, target_port)
        self.mode = mode
        self.delay_ms = delay_ms
        self.jitter_ms = jitter_ms
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port = int(self._listener.getsockname()[1])
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}", daemon=True)
        self._thread.start()

    # -- control ----------------------------------------------------------------------------

    def set(self, mode: Mode, delay_ms: int | None = None, jitter_ms: int = 0) -> None:
        if delay_ms is not None:
            self.delay_ms = delay_ms
        self.jitter_ms = jitter_ms
        self.mode = mode

    def cut(self) -> int:
        """Reset every open connection; returns how many were cut."""
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        return len(pairs)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def close(self) -> None:
        self._closed.set()
        _reset(self._listener)
        self.cut()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    # -- plumbing ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.mode is Mode.DROP:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, pair), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket,
              pair: tuple[socket.socket, socket.socket]) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if self.mode is Mode.BLACKHOLE:
                    continue  # swallowed: the other side waits for an answer that never comes
                if self.mode is Mode.DELAY and self.delay_ms:
                    jitter = random.uniform(-self.jitter_ms, self.jitter_ms)
                    time.sleep(max(0.0, self.delay_ms + jitter) / 1000)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                known = pair in self._pairs
                self._pairs.discard(pair)
            if known:
                for sock in pair:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    with contextlib.suppress(OSError):
                        sock.close()
