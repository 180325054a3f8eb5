"""Reading a ticket's event stream in tests: the `event: ticket` frames as Events, pings as None."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import requests


@dataclass
class Event:
    id: int
    ticket: dict


def events(response: requests.Response) -> Iterator[Event | None]:
    """Parse the stream: an Event per `event: ticket`, None per comment line (ping)."""
    fields: dict[str, str] = {}
    for raw in response.iter_lines(chunk_size=1, decode_unicode=True):
        if raw == "":
            if fields.get("event") == "ticket":
                yield Event(int(fields["id"]), json.loads(fields["data"]))
            fields = {}
        elif raw.startswith(":"):
            yield None
        else:
            name, _, value = raw.partition(": ")
            fields[name] = value


def first_event(url: str, timeout: float = 10, **options: object) -> Event:
    """The first ticket event of a stream, which is then closed."""
    with requests.get(url, stream=True, timeout=timeout, **options) as response:  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        return next(e for e in events(response) if e is not None)
