"""A drand beacon of the `bls-unchained-g1-rfc9380` scheme (League of Entropy quicknet in
production, `flashsale run`'s embedded beacon in development): the pinned chain, verification
of a round, and a client that asks HTTP relays for a round and believes none of them.

A relay is only a courier: every answer is checked against the pinned public key and the round
asked for, and the randomness is recomputed from the signature (SHA-256), never read from the
relay. Verification is `drand-verify` (Rust, about 2 ms a round).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import drand_verify
import requests

from common.platform.clock import now_seconds

if TYPE_CHECKING:
    from common.platform.settings import Settings

log = logging.getLogger(__name__)

BLS_SCHEME = "bls-unchained-g1-rfc9380"
SIGNATURE_BYTES = 48  # a compressed G1 point
PUBLIC_KEY_BYTES = 96  # a compressed G2 point
# drand hashes the round as 8 bytes big-endian: anything past that is no round of any chain.
MAX_ROUND = 2**64 - 1


class BeaconInvalid(ValueError):
    """A round's signature does not verify against the chain's public key (or is no signature)."""


class BeaconUnavailable(Exception):
    """No relay gave a verified answer for the round; the message says why, per relay."""


@dataclass(frozen=True)
class Chain:
    """A drand chain as pinned in settings: enough to verify its rounds and to time them."""

    chain_hash: str
    public_key: str  # hex, a 96-byte compressed G2 point
    period_seconds: int
    genesis_time: int

    def round_time(self, round: int) -> int:
        """Unix time at which `round` is produced (round 1 at genesis)."""
        return self.genesis_time + (round - 1) * self.period_seconds

    def first_round_at_or_after(self, unix_seconds: float) -> int:
        """The first round whose time is at or after `unix_seconds` (at least round 1)."""
        # Exact arithmetic: a float time on a round boundary must name that round.
        elapsed = Fraction(unix_seconds) - self.genesis_time
        return max(1, math.ceil(elapsed / self.period_seconds) + 1)

    def latest_round_at(self, unix_seconds: float) -> int:
        """The last round produced by `unix_seconds`; 0 before genesis."""
        elapsed = Fraction(unix_seconds) - self.genesis_time
        return 0 if elapsed < 0 else math.floor(elapsed / self.period_seconds) + 1

    def as_public(self) -> dict[str, Any]:
        return {"chain_hash": self.chain_hash, "public_key": self.public_key,
                "period_seconds": self.period_seconds, "genesis_time": self.genesis_time}


# League of Entropy quicknet: https://api.drand.sh/52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971/info
QUICKNET = Chain(
    chain_hash="52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971",
    public_key=("83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a577"
                "6a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc0"
                "9e76eae8991ef5ece45a"),
    period_seconds=3,
    genesis_time=1692803367,
)


@dataclass(frozen=True)
class BeaconRound:
    """A verified round: its signature (hex) and randomness = hex SHA-256 of the signature bytes."""

    round: int
    signature: str
    randomness: str


def _hex_bytes(value: object, length: int) -> bytes | None:
    if not isinstance(value, str) or len(value) != 2 * length:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


@lru_cache(maxsize=16)
def _public_key_problem(public_key: str) -> str | None:
    """Why `public_key` is no usable G2 public key, or None. drand-verify panics (a
    BaseException, with a Rust backtrace) on a key that is not a curve point, so it is checked
    here first, once per key (about 40 ms, pure Python)."""
    raw = _hex_bytes(public_key, PUBLIC_KEY_BYTES)
    if raw is None:
        return f"the public key is not {PUBLIC_KEY_BYTES} bytes of hex"
    from py_ecc.bls.point_compression import decompress_G2
    from py_ecc.bls.typing import G2Compressed
    from py_ecc.optimized_bls12_381 import curve_order, is_inf, multiply

    compressed = G2Compressed((int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big")))
    try:
        point = decompress_G2(compressed)
    except ValueError as exc:
        return f"the public key is not a G2 point ({exc})"
    # The point at infinity would accept the infinity "signature" for every round.
    if is_inf(point) or not is_inf(multiply(point, curve_order)):
        return "the public key is not in the G2 subgroup"
    return None


def check_public_key(public_key: str) -> None:
    """Raise ValueError when `public_key` cannot verify anything (bad hex, no curve point)."""
    problem = _public_key_problem(public_key.lower())
    if problem:
        raise ValueError(problem)


def verify_round(chain: Chain, round: int, signature_hex: str) -> BeaconRound:
    """The round, verified: its BLS signature checks against `chain.public_key` for exactly
    this round. Raises BeaconInvalid otherwise. Pure and deterministic (no network)."""
    if isinstance(round, bool) or not isinstance(round, int) or not 1 <= round <= MAX_ROUND:
        raise BeaconInvalid(f"{round!r} is not a round number")
    signature = signature_hex.strip().lower() if isinstance(signature_hex, str) else signature_hex
    raw = _hex_bytes(signature, SIGNATURE_BYTES)
    if raw is None:
        raise BeaconInvalid(f"the signature of round {round} is not {SIGNATURE_BYTES} bytes of hex")
    public_key = chain.public_key.lower()
    problem = _public_key_problem(public_key)
    if problem:
        raise BeaconInvalid(f"chain {chain.chain_hash}: {problem}")
    try:
        drand_verify.verify_bls_unchained_g1_rfc9380(round, signature, public_key)
    except ValueError as exc:
        raise BeaconInvalid(f"the signature does not verify for round {round}: {exc}") from None
    return BeaconRound(round=round, signature=signature, randomness=hashlib.sha256(raw).hexdigest())


def retry_delay(attempt: int) -> float:
    """Seconds to wait after the `attempt`-th failed try (counting from 1): 1, 2, 4, 8, then
    10 at most."""
    return min(10.0, 2.0 ** max(0, attempt - 1))


class BeaconClient:
    """Fetches verified rounds of one chain from drand HTTP relays, tried in order."""

    def __init__(self, chain: Chain, urls: Sequence[str], timeout_seconds: float = 3.0) -> None:
        check_public_key(chain.public_key)  # a misconfigured key shows at start, not at the draw
        self.chain = chain
        self.urls = [url.rstrip("/") for url in urls]
        self.timeout_seconds = timeout_seconds
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> BeaconClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def fetch_round(self, round: int) -> BeaconRound:
        """The verified round from the first relay that answers it correctly. A relay that
        answers anything else (another round, a bad signature) is logged and skipped. Raises
        BeaconUnavailable, without calling any relay, before the round's time; and when no
        relay gave a verified answer."""
        if isinstance(round, bool) or not isinstance(round, int) or not 1 <= round <= MAX_ROUND:
            raise BeaconInvalid(f"{round!r} is not a round number")
        due = self.chain.round_time(round)
        now = now_seconds()
        if now < due:
            raise BeaconUnavailable(f"round {round} is due at {due} (in {due - now:.1f} s)")
        if not self.urls:
            raise BeaconUnavailable("no drand relay is configured (DRAND_URLS)")
        reasons = []
        for url in self.urls:
            try:
                return self._fetch_from(url, round)
            except BeaconUnavailable as exc:
                reasons.append(f"{url}: {exc}")
        raise BeaconUnavailable(f"round {round}: no relay gave a verified answer: " + "; ".join(reasons))

    def _fetch_from(self, url: str, round: int) -> BeaconRound:
        endpoint = f"{url}/{self.chain.chain_hash}/public/{round}"
        try:
            response = self._session.get(endpoint, timeout=self.timeout_seconds)
        except requests.Timeout:
            raise BeaconUnavailable(f"timeout after {self.timeout_seconds:g} s") from None
        except requests.RequestException as exc:
            raise BeaconUnavailable(f"unreachable ({exc.__class__.__name__})") from None
        if response.status_code == 425:
            raise BeaconUnavailable("round not yet produced (HTTP 425 Too Early)")
        if response.status_code == 404:
            # Older relays say 404 for a future round; any relay for a chain it does not serve.
            raise BeaconUnavailable("round or chain not found (HTTP 404)")
        if response.status_code != 200:
            raise BeaconUnavailable(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            return self._lie(url, round, "an answer that is not JSON")
        if not isinstance(body, dict) or body.get("round") != round:
            answered = body.get("round") if isinstance(body, dict) else None
            return self._lie(url, round, f"round {answered!r} instead")
        try:
            verified = verify_round(self.chain, round, body.get("signature"))  # type: ignore[arg-type]
        except BeaconInvalid as exc:
            return self._lie(url, round, f"a wrong signature ({exc})")
        if body.get("randomness") not in (None, verified.randomness):
            # The signature is what counts; the relay's own randomness field is never used.
            log.warning("drand relay %s: round %s carries randomness %r, not SHA-256 of its "
                        "signature; the signature verified, so the round is used",
                        url, round, body.get("randomness"))
        return verified

    def _lie(self, url: str, round: int, what: str) -> BeaconRound:
        log.warning("drand relay %s answered round %s with %s; trying the next relay", url, round, what)
        raise BeaconUnavailable(f"wrong answer: {what}")


def chain_from_settings(settings: Settings) -> Chain:
    """The chain pinned by the DRAND_* settings (quicknet unless overridden)."""
    return Chain(chain_hash=settings.drand_chain_hash.lower(),
                 public_key=settings.drand_public_key.lower(),
                 period_seconds=settings.drand_period_seconds,
                 genesis_time=settings.drand_genesis_time)


def client_from_settings(settings: Settings) -> BeaconClient | None:
    """A client for the configured relays; None when DRAND_URLS is empty (no beacon)."""
    if not settings.drand_urls:
        return None
    return BeaconClient(chain_from_settings(settings), settings.drand_urls,
                        timeout_seconds=settings.drand_timeout_seconds)
