"""The embedded SMTP sink: a real SMTP server (aiosmtpd) that delivers nothing and keeps every
message it accepts as an RFC 5322 file under var/mail/, named `<ns since the epoch>-<n>.eml`
so that names sort oldest first, newest last.

`flashsale run` starts it (Procfile `smtp`) and points SMTP_URL at it; `flashsale mail` prints
the newest message, the development mailbox page lists them, and the tests read them. The
product only ever speaks SMTP to it, as to a real server.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

MAX_MESSAGE_BYTES = 1024 * 1024


class MailDirectoryHandler:
    """aiosmtpd's handler: each accepted message becomes one file, written whole then renamed
    into place, so a reader never sees half a message."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count(1)

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        name = f"{time.time_ns():020d}-{next(self._numbers):06d}.eml"
        partial = self.directory / f".{name}.part"
        partial.write_bytes(content if content.endswith(b"\n") else content + b"\r\n")
        os.replace(partial, self.directory / name)
        return "250 Message accepted for delivery"


def message_paths(directory: Path) -> list[Path]:
    """The saved messages, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*.eml"))


def read_message(path: Path) -> EmailMessage:
    with path.open("rb") as file:
        message: Any = BytesParser(policy=policy.default).parse(file)
    return message  # type: ignore[no-any-return]


async def serve(host: str, port: int, directory: Path) -> None:
    """Accept mail on host:port until SIGTERM or SIGINT."""
    handler = MailDirectoryHandler(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=MAX_MESSAGE_BYTES, hostname="flashsale-sink"),
        host=host, port=port)
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    async with server:
        await stopped.wait()


def smtp_command(url: str, directory: Path) -> list[str]:
    """The argv that runs the sink for SMTP_URL (smtp://host:port)."""
    import sys

    from common.development.embedded import port_of

    return [sys.executable, "-m", "common.development.smtp_sink", "--port", str(port_of(url)),
            "--dir", str(directory)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.dir))


if __name__ == "__main__":
    main()
