"""gunicorn's access log, one line per request at a fraction of the cost.

gunicorn's own `Logger.access` builds a dict of every request and response header and
environ item for each line, then %-formats the configured format against it: measured with
cProfile under an admission flood, that was a sizeable share of an admission's API CPU. This
writes the same line (`access_log_format` in api/gunicorn.conf.py: address, request line,
status, bytes, milliseconds, request id) from the few values it names.

It also skips the logging machinery per line (a LogRecord, the handler's lock and a flush, a
write system call, for every request: about 5% of a worker's time under an admission flood,
py-spy): lines collect in a list, and a flusher writes them out in one write every
FLUSH_SECONDS, as nginx's `access_log ... buffer= flush=` does (or sooner, past
MAX_PENDING_LINES). The list, not the stream's buffer: with PYTHONUNBUFFERED=1 (our Dockerfile,
the embedded run) the stream writes through, which was a write system call per line again
(5% of a worker, py-spy). A worker killed outright loses at most that last second of lines;
one that exits normally writes them at exit.

ACCESS_LOG_SAMPLE_RATE keeps that fraction of the lines (1.0, every request, by default);
`flashsale run` lowers it for development, where every line also crosses the supervisor's
relay (common/development/supervisor.py).

A logged URL carries no credential: the value of any query parameter whose name contains
`token` (a ticket's `stream_token`, which EventSource can only send in the URL) is written as
`[redacted]`, so that whoever reads the logs cannot follow a shopper's ticket. Only a request
line with a query string pays for the check.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

from common.platform.settings import get_settings

FLUSH_SECONDS = 1.0
# Written at once past this many lines: a second of a busy worker, a megabyte at most.
MAX_PENDING_LINES = 10_000
REDACTED = "[redacted]"


def redact_credentials(uri: str) -> str:
    """`uri` with the value of every query parameter whose name contains `token` (any case,
    percent-encoded or not) replaced by REDACTED; any other URI as it is."""
    path, mark, query = uri.partition("?")
    if not mark or "token" not in unquote_plus(query).lower():
        return uri
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, equals, _value = part.partition("=")
        if equals and "token" in unquote_plus(name).lower():
            parts[i] = f"{name}={REDACTED}"
    return f"{path}?{'&'.join(parts)}"


class AccessLog(Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.sample_rate = get_settings().access_log_sample_rate
        self._handler = self.direct_handler()
        self._flusher_pid = 0
        self._pending: list[str] = []

    def direct_handler(self) -> logging.StreamHandler[Any] | None:
        """The stream gunicorn set up for the access log ("-" or a file) when it is the only
        handler; with anything else (syslog, a logconfig's handlers) lines take the logging path."""
        handlers = self.access_log.handlers
        if len(handlers) == 1 and isinstance(handlers[0], logging.StreamHandler) \
                and getattr(handlers[0], "_gunicorn", False):
            return handlers[0]
        return None

    def access(self, resp: Any, _req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return
        request_id = "-"
        for name, value in resp.headers:
            if name.lower() == "x-request-id":
                request_id = value
                break
        status = str(resp.status).split(None, 1)[0]
        milliseconds = request_time.seconds * 1000 + request_time.microseconds // 1000
        uri = environ.get("RAW_URI")
        if uri and "?" in uri:
            uri = redact_credentials(uri)
        line = (f'{environ.get("REMOTE_ADDR", "-")} "{environ.get("REQUEST_METHOD")} '
                f'{uri} {environ.get("SERVER_PROTOCOL")}" {status} '
                f'{getattr(resp, "sent", None) or "-"} {milliseconds}ms rid={request_id}')
        handler = self._handler
        if handler is None:
            self.access_log.info(line)
            return
        if self._flusher_pid != os.getpid():  # the first line of this worker (after the fork)
            self._flusher_pid = os.getpid()
            self._pending = []
            threading.Thread(target=self._flush_every_second, daemon=True,
                             name="access-log-flush").start()
            atexit.register(self.write_pending)
        # A gevent worker runs one greenlet at a time: no lock needed around the list.
        self._pending.append(line)
        if len(self._pending) >= MAX_PENDING_LINES:
            self.write_pending()

    def write_pending(self) -> None:
        """The lines collected so far, in one write, and the stream flushed."""
        lines, self._pending = self._pending, []
        handler = self._handler
        if handler is None:
            return
        try:
            if lines:
                # handler.stream read now: a log file reopened on SIGUSR1 is followed.
                handler.stream.write("\n".join(lines) + "\n")
            handler.flush()
        except (OSError, ValueError):
            pass  # a closed stream at exit: nowhere left to write

    def _flush_every_second(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.write_pending()
