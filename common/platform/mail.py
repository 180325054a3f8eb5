"""Outgoing mail through SMTP (SMTP_URL), with the standard library's smtplib.

`smtp://[user:password@]host:port` speaks plain SMTP and upgrades with STARTTLS when the
server offers it; `smtps://` is TLS from the first byte. Called from Celery tasks only: a
request never waits on a mail server.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from common.platform.settings import SettingsError

TIMEOUT_SECONDS = 10.0


def send_message(smtp_url: str | None, message: EmailMessage, timeout: float = TIMEOUT_SECONDS) -> None:
    """Hand one message to the SMTP server; raises on any refusal (the task retries)."""
    if not smtp_url:
        raise SettingsError("SMTP_URL is not set")
    url = urlsplit(smtp_url)
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise SettingsError("SMTP_URL must read like smtp://host:port or smtps://host:port")
    smtp: smtplib.SMTP
    if url.scheme == "smtps":
        smtp = smtplib.SMTP_SSL(url.hostname, url.port or 465, timeout=timeout,
                                context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(url.hostname, url.port or 25, timeout=timeout)
    with smtp:
        if url.scheme == "smtp":
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
        if url.username:
            smtp.login(unquote(url.username), unquote(url.password or ""))
        smtp.send_message(message)
