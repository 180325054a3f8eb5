"""A shopper's side of a ticket's event stream (`GET /api/tickets/<id>/events`, API v2 "Live
updates"), for the gevent drivers: the surge, locust's shoppers and bench_sse.

One plain socket per stream, read line by line (HTTP/1.0, so the body is the raw event stream
and the server closes it after the final status): under gevent a stream is a greenlet and a
socket, so one load process holds thousands of them. Also who leaves in the leavers scenario.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

FINAL = frozenset({"paid", "sold_out", "expired", "cancelled", "payment_failed", "abandoned"})
UPDATES = ("sse", "poll")
# The server pings every 15 s: a stream silent for this long is dead.
READ_TIMEOUT_S = 40.0
RECONNECTS = 3


class StreamFailed(Exception):
    """The stream could not be opened (an HTTP status other than 200) or broke for good."""


@dataclass
class TicketEvent:
    id: int
    ticket: dict[str, Any]
    received_at: float  # time.time() when its last line arrived


class TicketStream:
    """One open event stream of one ticket; iterate it for its events, close it to hang up."""

    def __init__(self, base: str, ticket_id: str, *, stream_token: str = "", access_token: str = "",
                 last_event_id: int | None = None, timeout: float = READ_TIMEOUT_S) -> None:
        where = urlsplit(base)
        self.host, self.port = where.hostname or "127.0.0.1", where.port or 80
        path = f"{where.path.rstrip('/')}/api/tickets/{ticket_id}/events"
        if stream_token:
            path += f"?stream_token={quote(stream_token)}"
        lines = [f"GET {path} HTTP/1.0", f"Host: {self.host}:{self.port}", "Accept: text/event-stream"]
        if access_token and not stream_token:
            lines.append(f"Authorization: Bearer {access_token}")
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.reader: Any = None
        self.status = 0

    def open(self) -> TicketStream:
        """Connect and read the answer's head; StreamFailed unless it is 200."""
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.sendall(self.request)
        self.reader = self.sock.makefile("rb")
        status_line = self.reader.readline()
        parts = status_line.split()
        self.status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
        while self.reader.readline() not in (b"\r\n", b"\n", b""):
            pass
        if self.status != 200:
            body = self.reader.read(300)
            self.close()
            raise StreamFailed(f"HTTP {self.status} {body[:200].decode(errors='replace')}")
        return self

    def __iter__(self) -> Iterator[TicketEvent]:
        """The stream's events until the server ends it (pings and retry lines skipped)."""
        event_id: int | None = None
        data: list[str] = []
        while self.reader is not None:
            raw = self.reader.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\r\n")
            if not line:
                if data and event_id is not None:
                    yield TicketEvent(event_id, json.loads("\n".join(data)), time.time())
                event_id, data = None, []
            elif line.startswith("id:"):
                event_id = int(line[3:].strip())
            elif line.startswith("data:"):
                data.append(line[5:].strip())

    def close(self) -> None:
        for closing in (self.reader, self.sock):
            if closing is not None:
                try:
                    closing.close()
                except OSError:
                    pass
        self.reader = self.sock = None


def wait_over_stream(base: str, ticket: dict[str, Any], statuses: set[str] | frozenset[str], *,
                     access_token: str, deadline: float) -> dict[str, Any]:
    """Follow the ticket's stream until its status is one of `statuses` or final, and return
    it; reconnects with Last-Event-ID when the stream drops before that. StreamFailed when it
    cannot be opened, keeps dropping, or `deadline` (time.monotonic()) passes."""
    last_id: int | None = None
    current = ticket
    for _attempt in range(RECONNECTS + 1):
        stream = TicketStream(base, ticket["id"], stream_token=ticket.get("stream_token") or "",
                              access_token=access_token, last_event_id=last_id)
        try:
            stream.open()
            for event in stream:
                last_id, current = event.id, event.ticket
                if current["status"] in statuses or current["status"] in FINAL:
                    return current
                if time.monotonic() > deadline:
                    raise StreamFailed(f"ticket still {current['status']} at the deadline")
        except OSError as exc:  # reset, refused or silent for READ_TIMEOUT_S: reconnect
            if time.monotonic() > deadline:
                raise StreamFailed(f"{type(exc).__name__}: {exc}") from None
        finally:
            stream.close()
    raise StreamFailed(f"the stream dropped {RECONNECTS + 1} times (ticket {current['status']})")


def leave_after_first_event(base: str, ticket: dict[str, Any], access_token: str) -> None:
    """A leaver: opens the ticket's page (its stream), sees where it stands, closes the tab."""
    stream = TicketStream(base, ticket["id"], stream_token=ticket.get("stream_token") or "",
                          access_token=access_token)
    try:
        next(iter(stream.open()), None)
    finally:
        stream.close()


def is_leaver(index: int, fraction: float) -> bool:
    """Whether shopper `index` (0, 1, ...) leaves: spread evenly, `fraction` of every run of
    shoppers (1/3: every third one)."""
    return int((index + 1) * fraction + 1e-9) > int(index * fraction + 1e-9)
