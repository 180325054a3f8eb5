"""The API's access log: gunicorn's configured line, one per request, written without the
logging machinery and flushed within a second."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config

from api import access_log
from api.access_log import AccessLog


def _access_log(path, sample_rate: float) -> AccessLog:
    """The API's access log writing to `path`, as gunicorn sets it up (pytest's own capture
    handlers taken off, so that the file is its only handler, as under gunicorn)."""
    config = Config()
    config.set("accesslog", str(path))
    log = AccessLog(config)
    log.access_log.handlers[:] = [h for h in log.access_log.handlers if getattr(h, "_gunicorn", False)]
    log._handler = log.direct_handler()
    log.sample_rate = sample_rate
    assert log._handler is not None
    return log


def test_each_request_gets_its_line_and_the_lines_reach_the_file_within_a_second(tmp_path):
    path = tmp_path / "access.log"
    log = _access_log(path, 1.0)
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "POST", "RAW_URI": "/api/sales/s1/tickets",
               "SERVER_PROTOCOL": "HTTP/1.1"}
    for n in range(3):
        response = SimpleNamespace(headers=[("Content-Type", "application/json"), ("X-Request-ID", f"r{n}")],
                                   status="202 Accepted", sent=311)
        log.access(response, None, environ, timedelta(milliseconds=7 + n))
    expected = "".join(f'10.0.0.7 "POST /api/sales/s1/tickets HTTP/1.1" 202 311 {7 + n}ms rid=r{n}\n'
                       for n in range(3))
    deadline = time.monotonic() + access_log.FLUSH_SECONDS * 3
    while path.read_text() != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.read_text() == expected


def test_sampling_keeps_about_that_fraction(tmp_path):
    path = tmp_path / "access.log"
    log = _access_log(path, 0.1)
    response = SimpleNamespace(headers=[], status="200 OK", sent=2)
    for _ in range(2000):
        log.access(response, None, {}, timedelta(milliseconds=1))
    log.write_pending()
    assert 100 < len(path.read_text().splitlines()) < 300


class _RecordingStream:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def _lines(log: AccessLog, count: int) -> None:
    for n in range(count):
        response = SimpleNamespace(headers=[("X-Request-ID", f"r{n}")], status="202 Accepted", sent=9)
        log.access(response, None, {"REQUEST_METHOD": "POST"}, timedelta(milliseconds=1))


def test_the_lines_leave_in_one_write_per_flush_even_on_a_write_through_stream(tmp_path, monkeypatch):
    log = _access_log(tmp_path / "access.log", 1.0)
    registered: list[object] = []
    monkeypatch.setattr(access_log.atexit, "register", registered.append)
    monkeypatch.setattr(log._handler, "stream", stream := _RecordingStream())
    _lines(log, 100)
    assert stream.writes == []  # as PYTHONUNBUFFERED's stream would have had 100 writes
    log.write_pending()
    assert len(stream.writes) == 1 and stream.writes[0].count("\n") == 100
    assert stream.writes[0].splitlines()[-1].endswith("rid=r99")
    assert registered == [log.write_pending]  # a worker that exits normally writes what is left


def test_a_worker_past_the_bound_writes_at_once(tmp_path, monkeypatch):
    log = _access_log(tmp_path / "access.log", 1.0)
    monkeypatch.setattr(access_log, "MAX_PENDING_LINES", 5)
    monkeypatch.setattr(access_log.atexit, "register", lambda _: None)
    monkeypatch.setattr(log._handler, "stream", stream := _RecordingStream())
    _lines(log, 12)
    assert [text.count("\n") for text in stream.writes] == [5, 5] and len(log._pending) == 2


def test_no_token_in_a_query_string_reaches_the_log(tmp_path):
    """A stream token in the log would let its reader follow the shopper's ticket: the value of
    any parameter named like a token is redacted, whatever its case or encoding."""
    path = tmp_path / "access.log"
    log = _access_log(path, 1.0)
    uris = {
        "/api/tickets/t1/events?stream_token=1765000000.c2VjcmV0&last_event_id=7":
            "/api/tickets/t1/events?stream_token=[redacted]&last_event_id=7",
        "/x?limit=5&Access_TOKEN=abc&stream%5Ftoken=def&tokens=&token":
            "/x?limit=5&Access_TOKEN=[redacted]&stream%5Ftoken=[redacted]&tokens=[redacted]&token",
        "/api/sales?limit=5&cursor=abc": "/api/sales?limit=5&cursor=abc",
        "/api/sales/s1/tickets": "/api/sales/s1/tickets",
    }
    response = SimpleNamespace(headers=[("X-Request-ID", "r")], status="200 OK", sent=2)
    for uri in uris:
        log.access(response, None, {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "RAW_URI": uri,
                                    "SERVER_PROTOCOL": "HTTP/1.1"}, timedelta(milliseconds=1))
    log.write_pending()
    written = path.read_text()
    assert written == "".join(f'10.0.0.7 "GET {logged} HTTP/1.1" 200 2 1ms rid=r\n'
                              for logged in uris.values())
    assert "c2VjcmV0" not in written and "abc&" not in written.split("Access_TOKEN")[1]
