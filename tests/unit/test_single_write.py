"""api/single_write.py: a response puts the same bytes on the wire as gunicorn's own, and a
plain one (headers and a body of declared length) in a single send."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi

from api import single_write
from api.single_write import SingleWriteResponse

BODY = b'{"id":"tkt_1","status":"waiting"}\n'


@dataclass
class Request:
    method: str = "POST"
    version: tuple[int, int] = (1, 1)
    closing: bool = False

    def should_close(self) -> bool:
        return self.closing


@dataclass
class Socket:
    """Records every send; `takes` caps what one plain send() accepts, as a full buffer does."""
    takes: int = 1 << 20
    calls: list[tuple[str, bytes]] = field(default_factory=list)

    def send(self, data: Any) -> int:
        taken = bytes(data)[:self.takes]
        self.calls.append(("send", taken))
        return len(taken)

    def sendall(self, data: Any) -> None:
        self.calls.append(("sendall", bytes(data)))

    @property
    def wire(self) -> bytes:
        return b"".join(data for _, data in self.calls)


@pytest.fixture(autouse=True)
def fixed_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(util, "http_date", lambda timestamp=None: "Fri, 04 Dec 2026 08:00:00 GMT")
    monkeypatch.setattr(single_write, "_date_cache", [0, ""])


def respond(response_class: type, request: Request, status: str, headers: list[tuple[str, str]],
            chunks: list[bytes], sock: Socket | None = None) -> Socket:
    sock = sock or Socket()
    response = response_class(request, sock, Config())
    response.start_response(status, headers)
    for chunk in chunks:
        response.write(chunk)
    response.close()
    return sock


CASES = [
    ("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))], [BODY]),
    ("200 OK", [("Content-Length", str(len(BODY)))], [BODY[:10], BODY[10:]]),
    ("200 OK", [("Content-Length", "5")], [BODY]),  # longer than declared: cut to 5 bytes
    ("200 OK", [("Content-Type", "text/plain")], [b"chunked ", b"body"]),  # no length: chunked
    ("204 No Content", [], [b""]),
    ("304 Not Modified", [("Content-Length", str(len(BODY)))], [BODY]),
    ("200 OK", [("Content-Length", "0")], [b""]),
    ("200 OK", [("Content-Length", str(len(BODY))), ("Connection", "close")], [BODY]),
]


@pytest.mark.parametrize("request_", [Request(), Request(method="HEAD"), Request(version=(1, 0)),
                                      Request(closing=True)], ids=["post", "head", "http10", "closing"])
@pytest.mark.parametrize(("status", "headers", "chunks"), CASES)
def test_the_bytes_on_the_wire_are_gunicorns(request_: Request, status: str,
                                             headers: list[tuple[str, str]], chunks: list[bytes]) -> None:
    ours = respond(SingleWriteResponse, request_, status, headers, chunks)
    theirs = respond(wsgi.Response, request_, status, headers, chunks)
    assert ours.wire == theirs.wire


def test_headers_and_a_plain_body_leave_in_one_send() -> None:
    sock = respond(SingleWriteResponse, Request(), *CASES[0][:2], [BODY])
    assert len(gunicorns := respond(wsgi.Response, Request(), *CASES[0][:2], [BODY]).calls) == 2
    assert [kind for kind, _ in sock.calls] == ["send"]
    assert sock.calls[0][1].endswith(b"\r\n\r\n" + BODY) and sock.wire == b"".join(d for _, d in gunicorns)


def test_what_one_send_does_not_take_follows_with_sendall() -> None:
    sock = respond(SingleWriteResponse, Request(), *CASES[0][:2], [BODY], sock=Socket(takes=40))
    assert [kind for kind, _ in sock.calls] == ["send", "sendall"]
    assert sock.wire == respond(wsgi.Response, Request(), *CASES[0][:2], [BODY]).wire


def test_install_makes_gunicorn_build_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsgi, "Response", wsgi.Response)  # restored after the test
    single_write.install()
    assert wsgi.Response is SingleWriteResponse


def test_the_date_is_formatted_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.2]
    formatted: list[int] = []
    monkeypatch.setattr(single_write, "time", SimpleNamespace(time=lambda: clock[0]))
    monkeypatch.setattr(util, "http_date", lambda timestamp: formatted.append(timestamp) or f"at {timestamp}")
    assert [single_write.http_date() for _ in range(3)] == ["at 1000"] * 3
    clock[0] = 1001.0
    assert single_write.http_date() == "at 1001" and formatted == [1000, 1001]
