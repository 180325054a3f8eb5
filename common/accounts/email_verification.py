"""Proving that an account's owner reads its address: one-time links mailed to it.

A link carries a random token (32 bytes); only its SHA-256 is stored (`email_verifications`:
`{_id: sha256 hex, user_id, email, expires_at}`), so a copy of the database opens nothing.
A token is spent by one atomic `find_one_and_delete` that also requires it unexpired: of two
clicks on the same link one verifies, the other is `invalid_token`, as is a link older than
24 hours (checked against the clock here; the TTL index only clears old records away). The
token is made and mailed by a Celery task (worker/tasks.py), never on the request path, so it
never crosses the broker either.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import quote

from pymongo.database import Database

from common.accounts import users
from common.platform.clock import utc_now
from common.platform.errors import InvalidVerificationToken
from common.platform.mail import send_message

TOKEN_TTL = timedelta(hours=24)
TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 128


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(db: Database, user_id: str, email: str) -> str:
    """A new one-time token for this account and address, valid for 24 hours; only its hash is
    stored. Earlier unspent tokens stay valid until they expire."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    db.email_verifications.insert_one({"_id": _digest(token), "user_id": user_id, "email": email,
                                       "expires_at": utc_now() + TOKEN_TTL})
    return token


def confirm(db: Database, token: str) -> dict[str, Any]:
    """Spend a token and mark its account verified; the account's document after it.

    Atomic and single use: the token's record is deleted by the same call that finds it, and
    only while unexpired. InvalidVerificationToken for an unknown, spent or expired token, or
    when the account has changed its address since (none can yet) or is gone."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidVerificationToken()
    record = db.email_verifications.find_one_and_delete(
        {"_id": _digest(token), "expires_at": {"$gt": utc_now()}})
    if record is None:
        raise InvalidVerificationToken()
    user = users.mark_email_verified(db, record["user_id"])
    if user is None or user["email"] != record["email"]:
        raise InvalidVerificationToken()
    return user


def verification_message(*, to: str, name: str, link: str, sender: str) -> EmailMessage:
    """The mail that carries the link (plain text: it reads in any client and any test)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "Confirm your email for Flash Sale"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="flashsale.localhost")
    message.set_content(
        f"Hello {name},\n\n"
        "Confirm that this address is yours to take part in sales open to verified accounts:\n\n"
        f"{link}\n\n"
        f"The link works once, for {int(TOKEN_TTL.total_seconds() // 3600)} hours. If you did "
        "not sign up, ignore this message.\n")
    return message


def verification_link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/verify-email?token={quote(token)}"


def send_verification(db: Database, user_id: str, *, public_url: str, smtp_url: str | None,
                      sender: str) -> bool:
    """Mail a new link to the account's address (what the Celery task runs). False, and no
    mail, when the account is gone or verified already. A retried task may send a second
    link; each works once."""
    user = users.get_user(db, user_id)
    if user is None or user.get("email_verified"):
        return False
    token = issue_token(db, user_id, user["email"])
    send_message(smtp_url, verification_message(
        to=user["email"], name=user["name"], link=verification_link(public_url, token), sender=sender))
    return True
