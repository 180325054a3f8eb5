"""gunicorn's response, with the headers and a plain body leaving in one write.

gunicorn sends a response's headers in one `sendall` and each body chunk in another, and
gevent's `sendall` asks the kernel for the socket's send buffer size (`getsockopt`) before each
one. An admission's answer is a few hundred bytes, so most of that is per-call cost: under an
admission flood the headers' own send and the getsockopt calls were about 10% of a worker's
time (py-spy). Here the first body chunk that fits within the declared length goes out with the
headers in one `send`, with `sendall` only for whatever the kernel did not take. The Date header
is formatted once a second, not once a response (2%).

Everything else (chunked bodies, responses without a body, files, a chunk past the declared
length, the error pages) is gunicorn's own code. `install` swaps the class that `wsgi.create`
builds; it is called from gunicorn.conf.py in each worker.
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn import util
from gunicorn.http import wsgi


class SingleWriteResponse(wsgi.Response):  # type: ignore[misc]
    headers_sent: bool  # gunicorn's own attribute (its code has no annotations)

    def default_headers(self) -> list[str]:
        """gunicorn's own list (status line, Server, Date, Connection[, Transfer-Encoding]),
        with the Date formatted once a second."""
        if self.upgrade:
            connection = "upgrade"
        elif self.should_close():
            connection = "close"
        else:
            connection = "keep-alive"
        major, minor = self.req.version
        headers = [f"HTTP/{major}.{minor} {self.status}\r\n", f"Server: {self.version}\r\n",
                   f"Date: {http_date()}\r\n", f"Connection: {connection}\r\n"]
        if self.chunked:
            headers.append("Transfer-Encoding: chunked\r\n")
        return headers

    def write(self, arg: Any) -> None:
        if self.headers_sent or not self._fits_with_headers(arg):
            super().write(arg)
            return
        tosend = self.default_headers()
        tosend.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        head = ("".join(tosend) + "\r\n").encode("latin-1")
        self.headers_sent = True
        self.sent += len(arg)
        send_all(self.sock, head + arg)

    def _fits_with_headers(self, arg: Any) -> bool:
        """A bytes chunk framed as is, all of which the declared length allows."""
        if type(arg) is not bytes or not arg or self.chunked or self._omits_body:
            return False
        return self.response_length is None or self.sent + len(arg) <= self.response_length


def send_all(sock: Any, data: bytes) -> None:
    """`sock.sendall(data)` starting with one plain `send`, which takes a small answer whole."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


_date_cache: list[Any] = [0, ""]


def http_date() -> str:
    """gunicorn's `util.http_date()` for now, formatted at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, util.http_date(now)]
    return _date_cache[1]  # type: ignore[no-any-return]


def install() -> None:
    """Make gunicorn build SingleWriteResponse for every HTTP/1 request of this process."""
    wsgi.Response = SingleWriteResponse
