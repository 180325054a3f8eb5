"""A small JSON client on geventhttpclient for the gevent drivers (the surge, the benchmark):
thousands of greenlets share one pool of keep-alive connections per host."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from geventhttpclient import HTTPClient


@dataclass
class Answer:
    status: int
    body: Any
    ms: float
    started_at: float

    def error_code(self) -> str:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return str(error.get("code", "")) if isinstance(error, dict) else ""


class JsonClient:
    def __init__(self, base: str, connections: int, timeout: float = 60.0) -> None:
        where = urlsplit(base)
        self.prefix = where.path.rstrip("/")
        self.http = HTTPClient(where.hostname or "127.0.0.1", where.port,
                               ssl=where.scheme == "https", concurrency=connections,
                               connection_timeout=timeout, network_timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, token: str = "",
                form: dict[str, str] | None = None) -> Answer:
        headers = {"Accept": "application/json"}
        payload = b""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if form is not None:
            from urllib.parse import urlencode

            payload = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        started_at = time.time()
        started = time.perf_counter()
        response = self.http.request(method, self.prefix + path, body=payload, headers=headers)
        raw = response.read()
        ms = (time.perf_counter() - started) * 1000
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw[:200].decode(errors="replace")
        return Answer(response.status_code, parsed, ms, started_at)

    def close(self) -> None:
        self.http.close()
