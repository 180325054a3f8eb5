"""Verified entry end to end against `flashsale run`: the sign-up's mail leaves through the
Celery worker and SMTP, lands in the embedded sink's var/mail/ (named `smtp` in services.json),
`flashsale mail` prints it, the development mailbox lists it, and its link lets the shopper
into a sale that requires a verified email."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.shop import Shopper, admin, create_sale

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def wait_for_mail(mail_dir: Path, address: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(mail_dir.glob("*.eml")):
            with path.open("rb") as file:
                message = BytesParser(policy=policy.default).parse(file)
            if message["To"] == address:
                return path, message
        time.sleep(0.1)
    raise AssertionError(f"no mail for {address} in {mail_dir}")


def test_sign_up_mail_arrives_in_the_sink_and_its_link_lets_the_shopper_in(system):
    assert system.services["smtp"].startswith("smtp://127.0.0.1:")
    assert "smtp" in system.services["embedded"]
    mail_dir = Path(system.services["mail_dir"])
    assert mail_dir == system.var_dir / "mail"
    sale = create_sale(admin(system.url), stock=3)
    assert sale["entry"]["verified_email"] is True  # the contract's default

    shopper = Shopper(system.url).register(verify=False)
    refused = shopper.join(sale["id"])
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "email_unverified"

    path, message = wait_for_mail(mail_dir, shopper.email)
    assert path.name.endswith(".eml") and path.name[:20].isdigit()
    body = message.get_body(preferencelist=("plain",)).get_content()
    link = next(word for word in body.split() if "/verify-email?token=" in word)
    assert link.startswith(system.url + "/verify-email?token=")

    printed = subprocess.run([str(Path(sys.executable).parent / "flashsale"), "mail"],
                             env={**os.environ, "VAR_DIR": str(system.var_dir)},
                             capture_output=True, text=True, timeout=60, check=True).stdout
    assert "Subject: Confirm your email" in printed and "/verify-email?token=" in printed

    listed = system.get("/api/dev/mailbox", params={"to": shopper.email}).json()["items"]
    assert [item["links"] for item in listed] == [[link]]

    token = parse_qs(urlsplit(link).query)["token"][0]
    verified = system.post("/api/auth/verify-email", json={"token": token})
    assert verified.status_code == 200 and verified.json()["email_verified"] is True
    assert system.post("/api/auth/verify-email", json={"token": token}).status_code == 400

    admitted = shopper.join(sale["id"])  # its token from before, checked against the account
    assert admitted.status_code == 202, admitted.text
    again = shopper.login().join(sale["id"])  # a fresh token says so itself
    assert again.status_code == 200, again.text
