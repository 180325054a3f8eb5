"""The development mailbox: the embedded SMTP sink's messages (var/mail/), as JSON for the
shop's `/dev/mailbox` page, so that signing up and verifying on `make run` takes one click
instead of a real inbox.

Registered only with DEV_MAILBOX (which `flashsale run` sets when it starts the sink, and the
settings refuse in production): it shows every mail the shop sent, to anyone. Reads files
with the standard library only; the product never imports the development tooling.
"""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from api.extensions import settings

blp = Blueprint("dev_mailbox", __name__, url_prefix="/api/dev")

MAX_MESSAGES = 50
LINK = re.compile(r"https?://[^\s<>\"']+")
# The sink writes each file whole and never changes it: parsed once per process. Tests that
# sign up hundreds of shoppers at once poll this page for each one's mail.
_parsed: dict[Path, dict[str, Any]] = {}


def _cached_message(path: Path) -> dict[str, Any]:
    message = _parsed.get(path)
    if message is None:
        message = _parsed[path] = _message(path)
    return message


def _message(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        message = cast(EmailMessage, BytesParser(policy=policy.default).parse(file))
    body = message.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if body is not None else ""
    return {"id": path.stem, "to": str(message["To"] or ""), "from": str(message["From"] or ""),
            "subject": str(message["Subject"] or ""), "date": str(message["Date"] or ""),
            "text": text, "links": LINK.findall(text)}


@blp.route("/mailbox", methods=["GET"])
def mailbox() -> ResponseReturnValue:
    """The newest messages first (at most 50); `?to=<address>`: only those sent to it."""
    directory = settings().var_dir / "mail"
    wanted = (request.args.get("to") or "").strip().lower()
    items: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.eml"), reverse=True) if directory.is_dir() else []:
        message = _cached_message(path)
        if wanted and wanted not in message["to"].lower():
            continue
        items.append(message)
        if len(items) == MAX_MESSAGES:
            break
    return jsonify({"items": items})
