"""gunicorn's access log, one line per request at a fraction of the cost.

gunicorn's own `Logger.access` builds a dict of every request and response header and
environ item for each line, then %-formats the configured format against it: measured with
cProfile under an admission flood, that was a sizeable share of an admission's API CPU. This
writes the same line (`access_log_format` in api/gunicorn.conf.py: address, request line,
status, bytes, milliseconds, request id) from the few values it names.

ACCESS_LOG_SAMPLE_RATE keeps that fraction of the lines (1.0, every request, by default);
`flashsale run` lowers it for development, where every line also crosses the supervisor's
relay (common/development/supervisor.py).
"""

from __future__ import annotations

import random
from typing import Any

from gunicorn.glogging import Logger

from common.platform.settings import get_settings


class AccessLog(Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.sample_rate = get_settings().access_log_sample_rate

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
        self.access_log.info(
            '%s "%s %s %s" %s %s %sms rid=%s', environ.get("REMOTE_ADDR", "-"),
            environ.get("REQUEST_METHOD"), environ.get("RAW_URI"), environ.get("SERVER_PROTOCOL"),
            status, getattr(resp, "sent", None) or "-", milliseconds, request_id)
