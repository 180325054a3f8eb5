"""A per-process cache of access tokens whose signature has been verified.

Under an admission flood every shopper sends the same token with each request (a retry, the
poll after it, the next sale); checking its HS256 signature and decoding its claims with PyJWT
took about a quarter of the admission's own CPU in a cProfile of the fast path. A token seen
before is looked up instead. What the cache keeps is only what a signature check proves; the
rest is checked on every use: the expiry here, against the clock, and revocation by the caller
(the denylist copy, common/accounts/revocations.py), so a revoked token is refused at once.
"""

from __future__ import annotations

from typing import Any

from common.platform.clock import now_seconds

MAX_ENTRIES = 20_000  # about 15 MiB per process at most


class VerifiedTokens:
    """token -> its verified claims, bounded (the oldest entry goes first when full).

    Not locked: a gevent worker runs one greenlet at a time, and a lost race costs one more
    signature check, never a wrong answer."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._claims: dict[str, dict[str, Any]] = {}

    def get(self, token: str) -> dict[str, Any] | None:
        """The claims of a token verified before and not expired yet, else None."""
        claims = self._claims.get(token)
        if claims is None:
            return None
        if claims["exp"] <= now_seconds():
            self._claims.pop(token, None)
            return None
        return claims

    def put(self, token: str, claims: dict[str, Any]) -> None:
        """Remember the claims of a token whose signature and claims were just verified."""
        while len(self._claims) >= self.max_entries:
            try:
                self._claims.pop(next(iter(self._claims)))
            except (StopIteration, KeyError, RuntimeError):
                break
        self._claims[token] = claims
