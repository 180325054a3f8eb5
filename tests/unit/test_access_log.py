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
    log._handler.flush()
    assert 100 < len(path.read_text().splitlines()) < 300
