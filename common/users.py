"""Shop accounts: registration, password checks, roles and the first admin.

Users live in the `users` collection; the unique index on `email` (common/schema.py) is what
makes "one account per email" hold under concurrent registrations. Passwords are stored only
as argon2id hashes and never logged.
"""

from __future__ import annotations

import logging
import secrets
from enum import StrEnum
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from common.clock import utc_now
from common.errors import AccountNotAdmin, EmailTaken, InvalidCredentials, ValidationFailed

log = logging.getLogger("common.users")

PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 128
NAME_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254

_hasher = PasswordHasher()


class Role(StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"


def new_user_id() -> str:
    return "usr_" + secrets.token_hex(16)


def normalise_email(email: str) -> str:
    """The form an email is stored and looked up in: stripped and lowercase."""
    return email.strip().lower()


def check_password_rules(password: str) -> None:
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise ValidationFailed(details={"fields": {"password": [
            f"Length must be between {PASSWORD_MIN_LENGTH} and {PASSWORD_MAX_LENGTH}."]}})


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def user_to_public(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "email": doc["email"], "name": doc["name"], "role": doc["role"]}


def create_user(db: Database, *, email: str, password: str, name: str,
                role: Role = Role.CUSTOMER) -> dict[str, Any]:
    """Insert a new account; EmailTaken if the (normalised) email is already registered."""
    check_password_rules(password)
    doc = {
        "_id": new_user_id(),
        "email": normalise_email(email),
        "name": name.strip(),
        "role": str(role),
        "password_hash": hash_password(password),
        "created_at": utc_now(),
    }
    try:
        db.users.insert_one(doc)
    except DuplicateKeyError:
        raise EmailTaken() from None
    return doc


def get_user(db: Database, user_id: str) -> dict[str, Any] | None:
    return db.users.find_one({"_id": user_id})


def find_by_email(db: Database, email: str) -> dict[str, Any] | None:
    return db.users.find_one({"email": normalise_email(email)})


def authenticate(db: Database, email: str, password: str) -> dict[str, Any]:
    """The account for these credentials, or InvalidCredentials.

    An unknown email costs the same hash check as a wrong password, so response times do not
    tell which emails have accounts. Hashes made with older parameters are upgraded here.
    """
    user = find_by_email(db, email)
    try:
        _hasher.verify(user["password_hash"] if user else _decoy_hash(), password)
    except (VerificationError, InvalidHashError):
        raise InvalidCredentials() from None
    if user is None:
        raise InvalidCredentials()
    if _hasher.check_needs_rehash(user["password_hash"]):
        db.users.update_one({"_id": user["_id"]},
                            {"$set": {"password_hash": hash_password(password)}})
    return user


def ensure_admin(db: Database, *, email: str, password: str | None, name: str = "Admin",
                 promote_existing: bool = False) -> tuple[dict[str, Any], bool]:
    """Make sure an admin account exists for `email` (idempotent).

    Creates it when missing (which needs `password`) and returns `(user, True)`; an account
    that is already an admin is returned as `(user, False)`. An existing customer account is
    promoted (its password left as it is) only with `promote_existing`: whoever registered the
    address first would otherwise become admin. Without it, AccountNotAdmin and no change.
    Safe to run from several processes at once.
    """
    existing = find_by_email(db, email)
    if existing is None:
        if not password:
            raise ValidationFailed("A password is needed to create the admin account.",
                                   details={"fields": {"password": ["Missing."]}})
        try:
            return create_user(db, email=email, password=password, name=name, role=Role.ADMIN), True
        except EmailTaken:
            existing = find_by_email(db, email)  # another process created it just now
            if existing is None:
                raise
    if existing["role"] != Role.ADMIN:
        if not promote_existing:
            raise AccountNotAdmin(details={"user_id": existing["_id"]})
        db.users.update_one({"_id": existing["_id"]}, {"$set": {"role": str(Role.ADMIN)}})
        existing["role"] = str(Role.ADMIN)
        log.info("promoted an existing account to admin", extra={"user_id": existing["_id"]})
    return existing, False
