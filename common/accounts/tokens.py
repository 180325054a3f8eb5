"""Refresh-token families and the access-token denylist.

Every login starts a *family*; each refresh spends the presented refresh token and issues the
next one of the same family. Presenting a spent token again means it was copied: the whole
family is revoked, so neither the thief nor the owner can go on refreshing.

Refresh tokens live in MongoDB (`refresh_tokens`: `{_id: jti, family, user_id, spent, revoked,
expires_at}`); revoked access tokens and families are entries of the Redis denylist
(common/accounts/revocations.py), kept for the longest time a token they cover could still be valid.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis
from pymongo import ReturnDocument
from pymongo.database import Database

from common.accounts import revocations
from common.platform.clock import now_seconds, utc_now
from common.platform.errors import TokenRevoked


def record_refresh_token(db: Database, *, jti: str, family: str, user_id: str,
                         ttl_seconds: int) -> dict[str, Any]:
    """Remember a refresh token before it is handed out, unspent."""
    doc = {"_id": jti, "family": family, "user_id": user_id, "spent": False, "revoked": False,
           "expires_at": utc_now() + timedelta(seconds=ttl_seconds)}
    db.refresh_tokens.insert_one(doc)
    return doc


def spend_refresh_token(db: Database, redis_client: redis.Redis, jti: str, *,
                        access_ttl_seconds: int,
                        copy: revocations.DenylistCopy | None = None) -> dict[str, Any]:
    """Spend a refresh token exactly once and return its record.

    Atomic: of two requests presenting the same token only one spends it. A token that was
    already spent revokes its whole family (reuse detection) and, like a revoked or unknown
    one, raises TokenRevoked.
    """
    spent = db.refresh_tokens.find_one_and_update(
        {"_id": jti, "spent": False, "revoked": False},
        {"$set": {"spent": True}}, return_document=ReturnDocument.BEFORE)
    if spent is not None:
        return spent
    known = db.refresh_tokens.find_one({"_id": jti})
    if known is not None and known["spent"] and not known["revoked"]:
        revoke_family(db, redis_client, known["family"], access_ttl_seconds=access_ttl_seconds,
                      copy=copy)
        raise TokenRevoked("This refresh token was already used; every session of its login "
                           "is now signed out.", details={"reason": "refresh_token_reuse"})
    raise TokenRevoked()


def revoke_family(db: Database, redis_client: redis.Redis, family: str, *,
                  access_ttl_seconds: int, copy: revocations.DenylistCopy | None = None) -> None:
    """Refuse every refresh token of `family` and every access token issued with it
    (idempotent)."""
    db.refresh_tokens.update_many({"family": family, "revoked": False},
                                  {"$set": {"revoked": True}})
    revocations.revoke(redis_client, revocations.family_member(family),
                       now_seconds() + max(1, access_ttl_seconds), copy)


def revoke_access_token(redis_client: redis.Redis, jti: str, expires_at: int,
                        copy: revocations.DenylistCopy | None = None) -> None:
    """Refuse this access token until it would have expired anyway (`expires_at`: epoch s)."""
    if expires_at + 1 > now_seconds():
        revocations.revoke(redis_client, revocations.access_member(jti), expires_at + 1, copy)


def is_access_token_revoked(redis_client: redis.Redis, jti: str, family: str | None,
                            copy: revocations.DenylistCopy | None = None) -> bool:
    """From this process's copy of the denylist when it is current, else from Redis."""
    members = revocations.members_of(jti, family)
    known = copy.is_denied(members) if copy is not None else None
    return known if known is not None else revocations.is_denied(redis_client, members)


def is_refresh_token_revoked(db: Database, jti: str) -> bool:
    """Unknown and revoked refresh tokens are refused; spent ones reach `spend_refresh_token`,
    which tells reuse apart."""
    doc = db.refresh_tokens.find_one({"_id": jti}, {"revoked": 1})
    return doc is None or bool(doc["revoked"])
