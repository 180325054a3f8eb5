"""Proof-of-work at a sale's door (a sale's `entry.challenge`): ALTCHA challenges, and the
check of a solution that comes with an admission.

A script that registers a thousand accounts gets a thousand entries for free; with a challenge
each entry costs it a browser's share of work, which a person pays once, in the background,
while reading the sale page or waiting in the lobby (frontend/src/lib/entryChallenge.ts).

The protocol is ALTCHA's first one (the `altcha` package's `create_challenge_v1` and
`verify_solution_v1`; the `altcha` npm widget solves such a challenge and sends its payload):
`challenge = SHA-256(salt + number)` for a secret number in [0, maxnumber], `signature =
HMAC-SHA256(key, challenge)`, and the salt carries `expires=<unix s>` and `sale=<id>`, which
the signature covers. Checking a solution is one base64 and JSON decode, one SHA-256 and one
HMAC: the library's verify_solution_v1 costs about 11 us of CPU (loadtests/bench_challenge.py),
well within the 50 us an admission may spend on it, so it is used as it is.

A solution is accepted once: admit.lua records the challenge under the sale's slot
(`{sale:<id>}:altcha:<challenge>`, until it expires) in the admission's own round trip.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import altcha
from altcha.v1 import PayloadType

from common.platform.settings import Settings

ALGORITHM: Final = "SHA-256"
# A payload is about 400 characters; anything much longer is not one.
MAX_PAYLOAD_CHARS = 1024


@dataclass(frozen=True)
class Solution:
    """A solution that checked out: its challenge names it, once, until it expires."""

    challenge: str
    expires_at_ms: int


def hmac_key(settings: Settings) -> str:
    """ALTCHA_HMAC_KEY, or a key derived from the JWT signing key (one secret fewer to set).
    Worked out once per configuration (the JWT key may live in a file under var/)."""
    return _hmac_key(settings.altcha_hmac_key, settings.jwt_secret_key, str(settings.var_dir),
                     settings.jwt_secret)


_keys: dict[tuple[str | None, str | None, str], str] = {}


def _hmac_key(explicit: str | None, jwt_key: str | None, var_dir: str,
              jwt_secret: Callable[[], str]) -> str:
    found = _keys.get((explicit, jwt_key, var_dir))
    if found is None:
        found = explicit or hmac.new(jwt_secret().encode(), b"altcha-challenge",
                                     hashlib.sha256).hexdigest()
        _keys[(explicit, jwt_key, var_dir)] = found
    return found


def challenge_url(sale_id: str) -> str:
    return f"/api/sales/{sale_id}/challenge"


def new_challenge(sale_id: str, key: str, *, max_number: int, ttl_seconds: int) -> dict[str, Any]:
    """A challenge for one admission to the sale, as the widget takes it (ALTCHA v1 JSON)."""
    made = altcha.create_challenge_v1(altcha.ChallengeOptionsV1(
        algorithm=ALGORITHM, max_number=max_number, hmac_key=key,
        expires=datetime.now(UTC) + timedelta(seconds=ttl_seconds), params={"sale": sale_id}))
    return {"algorithm": made.algorithm, "challenge": made.challenge, "maxnumber": made.max_number,
            "salt": made.salt, "signature": made.signature}


def verify(payload: Any, sale_id: str, key: str) -> Solution | None:
    """The solution in an admission's `altcha` payload (base64 JSON), or None when it is
    missing, malformed, wrongly solved or signed, expired, or made for another sale.
    Pure: whether it was used before is admit.lua's to say."""
    if type(payload) is not str or not payload or len(payload) > MAX_PAYLOAD_CHARS:
        return None
    try:
        data = json.loads(base64.b64decode(payload, validate=True))
        if type(data) is not dict or data.get("algorithm") != ALGORITHM:
            return None
        salt, challenge = data["salt"], data["challenge"]
        if type(salt) is not str or type(challenge) is not str or type(data["number"]) is not int:
            return None
        verified, _error = altcha.verify_solution_v1(cast(PayloadType, data), key, check_expires=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return None
    if not verified:
        return None
    params = urllib.parse.parse_qs(salt.partition("?")[2])
    expires = params.get("expires") or [""]
    if params.get("sale") != [sale_id] or not expires[0].isdigit():
        return None  # another sale's, or one that never expires: not one of ours
    expires_at_ms = int(expires[0]) * 1000
    if expires_at_ms <= time.time() * 1000:
        return None
    return Solution(challenge=challenge, expires_at_ms=expires_at_ms)
