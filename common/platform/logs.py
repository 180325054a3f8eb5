"""Structured JSON logs with a request id that follows a request into the tasks it causes."""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from common.platform import ids

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def request_id_from(incoming: str) -> str:
    """The client's X-Request-ID when it is a safe token to log, else a new id."""
    return incoming if REQUEST_ID_PATTERN.match(incoming) else ids.new_request_id()


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "INFO", fmt: str = "json", process: str = "app") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
            static_fields={"process": process},
        ))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Beat and the worker would log every one-second sweep at INFO.
    for noisy in ("stripe", "urllib3", "pymongo", "celery.beat", "celery.worker.strategy",
                  "celery.app.trace"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
