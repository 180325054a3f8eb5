"""Shop accounts: registration, password checks, roles and the first admin.

Users live in the `users` collection; the unique index on `email_key` (common/platform/schema.py)
is what makes "one account per person's inbox" hold under concurrent registrations: the key is
the address without the dots and `+tags` its provider ignores (common/accounts/email_identity.py),
so an alias of an account is `email_taken`. Accounts made before the key existed get it at
start-up (`backfill_email_keys`) and are found by `email` meanwhile. Passwords are stored only
as argon2id hashes and never logged. `email_verified` says the owner followed a link mailed to
the address (common/accounts/email_verification.py); documents without it read false.

The hash's cost is a setting (PASSWORD_HASH_MEMORY_KIB, _TIME_COST, _PARALLELISM), by default
OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane, about 20-40 ms of a core per check here,
against 150-290 ms for argon2-cffi's own default (64 MiB, 3 passes, 4 lanes), which let two
cores sign in about 7 shoppers a second. A stored hash made with other parameters is rehashed
with the current ones on its owner's next successful sign-in.

Capacity (the sizing rule's sign-in term): API cores for sign-ins = sign-ins per second x API
CPU per sign-in. `make bench`'s sign-in storm measures the latter through the API: 28-29 ms
with the default (the check, then two tokens, the refresh token recorded, the rate limits),
so one core signs in about 35 shoppers a second, against 176-181 ms (about 6 a second) with
argon2-cffi's default, on a shared 2-core machine. 10,000 shoppers signing in over the last
10 minutes before a drop (17 a second) then take about half a core.

Under gevent a hash or check would stall every other request of the process, so it runs on a
small pool of native threads instead; argon2-cffi releases the GIL while it hashes (measured
with the old default: 4 hashes on 2 threads take 0.40 s against 0.88 s one after the other,
and a thread ticking every 10 ms meanwhile missed 2 ticks of 39).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Callable
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from common.accounts.email_identity import EmailIdentity, check_accepted
from common.platform.clock import utc_now
from common.platform.errors import AccountNotAdmin, EmailTaken, InvalidCredentials, ValidationFailed
from common.platform.ids import new_user_id
from common.platform.settings import Settings

log = logging.getLogger("common.accounts.users")

PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 128
NAME_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254



def password_hasher(memory_kib: int, time_cost: int, parallelism: int) -> PasswordHasher:
    """An argon2id hasher with these parameters (memory in KiB)."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                          type=Type.ID)


def _default_hasher() -> PasswordHasher:
    fields = Settings.model_fields  # the settings' defaults, not the environment
    return password_hasher(fields["password_hash_memory_kib"].default,
                           fields["password_hash_time_cost"].default,
                           fields["password_hash_parallelism"].default)


_hasher = _default_hasher()
_identity = EmailIdentity(Settings.model_fields["email_dot_insensitive_domains"].default,
                          Settings.model_fields["email_plus_tag_domains"].default)


def configure_accounts(settings: Settings) -> None:
    """The settings' password hashing and email identity rules, from now on (the API's app
    factory, once per process)."""
    global _identity
    configure_password_hashing(settings)
    _identity = EmailIdentity(settings.email_dot_insensitive_domains, settings.email_plus_tag_domains)


def email_key(email: str) -> str:
    """The uniqueness key of an address under the configured providers' rules."""
    return _identity.key(email)


def configure_password_hashing(settings: Settings) -> None:
    """Hash and check passwords with the settings' argon2 parameters from now on (each process
    at start: the API's app factory, `flashsale create-admin`). Stored hashes made with others
    still verify, and are rehashed on their owner's next sign-in."""
    global _hasher
    _hasher = password_hasher(settings.password_hash_memory_kib, settings.password_hash_time_cost,
                              settings.password_hash_parallelism)
    _decoy_hash.cache_clear()  # an unknown email must cost what a known one costs

T = TypeVar("T")

# One hash at a time per process (gunicorn runs a process per core): more at once only take
# the cores, caches and memory bandwidth the requests need (measured with 64 MiB hashes). Measured under 16
# sign-up loops on 2 cores: admission p95 x2.7 with 2 threads per process, x1.25 with 1.
HASHING_THREADS = 1
HASHING_NICENESS = 19
_hashing_pool: Any = None
_hashing_pool_pid = 0
_hashing_pool_lock = threading.Lock()


def _gevent_hashing_pool() -> Any:
    """This process's gevent thread pool for hashing, or None when gevent is not patched in
    (a CLI, a Celery thread, a test client): then there is no event loop to keep free."""
    global _hashing_pool, _hashing_pool_pid
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency of the API
        return None
    if not monkey.is_module_patched("threading"):
        return None
    if _hashing_pool is None or _hashing_pool_pid != os.getpid():  # new process after a fork
        with _hashing_pool_lock:
            if _hashing_pool is None or _hashing_pool_pid != os.getpid():
                from gevent.threadpool import ThreadPool

                # Not the hub's own pool: DNS lookups run there and must not queue behind hashes.
                _hashing_pool = ThreadPool(HASHING_THREADS)
                _hashing_pool_pid = os.getpid()
    return _hashing_pool


def off_the_event_loop(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` on a native thread while the calling greenlet waits (under gevent), or
    just `work(*args)` (without it). Exceptions are raised in the caller either way."""
    pool = _gevent_hashing_pool()
    if pool is None:
        return work(*args)
    return pool.apply(_at_low_priority, (work, *args))  # type: ignore[no-any-return]


def _at_low_priority(work: Callable[..., T], *args: Any) -> T:
    # Niced: the cores go to the requests first (Linux nice is per thread, so only the
    # hashing threads are affected); hashes take what is left.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)
    return work(*args)


class Role(StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"


def normalise_email(email: str) -> str:
    """The form an email is stored and looked up in: stripped and lowercase."""
    return email.strip().lower()


def check_password_rules(password: str) -> None:
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise ValidationFailed(details={"fields": {"password": [
            f"Length must be between {PASSWORD_MIN_LENGTH} and {PASSWORD_MAX_LENGTH}."]}})


def hash_password(password: str) -> str:
    """An argon2id hash of `password`, computed off the event loop."""
    return off_the_event_loop(_hasher.hash, password)


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    return hash_password(secrets.token_hex(16))


def _verify(password_hash: str, password: str) -> bool:
    """argon2 verify and the rehash check, in one trip off the event loop."""
    _hasher.verify(password_hash, password)
    return _hasher.check_needs_rehash(password_hash)


def user_to_public(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "email": doc["email"], "name": doc["name"], "role": doc["role"],
            "email_verified": bool(doc.get("email_verified", False))}


def create_user(db: Database, *, email: str, password: str, name: str,
                role: Role = Role.CUSTOMER, email_verified: bool = False) -> dict[str, Any]:
    """Insert a new account. EmailNotAccepted (422) for a disposable-mail address; EmailTaken
    if the address or an alias of it (the same `email_key`) is registered already, decided by
    the unique indexes, so two concurrent sign-ups of aliases make one account."""
    check_password_rules(password)
    check_accepted(email)
    key = email_key(email)
    doc = {
        "_id": new_user_id(),
        "email": normalise_email(email),
        "email_key": key,
        "email_verified": email_verified,
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
    """The account of this address or of any alias of it (the same key); an account made
    before keys existed is found by its address."""
    return db.users.find_one({"email_key": email_key(email)}) or \
        db.users.find_one({"email": normalise_email(email)})


def is_email_verified(db: Database, user_id: str) -> bool:
    """Whether the account's owner has confirmed its address (false for an unknown id)."""
    doc = db.users.find_one({"_id": user_id}, {"email_verified": 1})
    return bool(doc and doc.get("email_verified"))


def mark_email_verified(db: Database, user_id: str) -> dict[str, Any] | None:
    """Set `email_verified` (idempotent); the account after it, or None when it is gone."""
    return db.users.find_one_and_update({"_id": user_id}, {"$set": {"email_verified": True}},
                                        return_document=ReturnDocument.AFTER)


def backfill_email_keys(db: Database) -> int:
    """Give every account made before `email_key` existed its key (idempotent, at start-up).
    Of two old accounts whose addresses are aliases of each other the older keeps the key; the
    other stays without one (the partial unique index allows it) and signs in by its address.
    Returns how many accounts got a key now."""
    done = 0
    for doc in db.users.find({"email_key": {"$exists": False}}, {"email": 1}).sort("created_at", 1):
        try:
            result = db.users.update_one({"_id": doc["_id"], "email_key": {"$exists": False}},
                                         {"$set": {"email_key": email_key(doc["email"])}})
        except DuplicateKeyError:
            log.warning("an old account is an alias of another; left without an email key",
                        extra={"user_id": doc["_id"]})
            continue
        done += result.modified_count
    return done


def authenticate(db: Database, email: str, password: str) -> dict[str, Any]:
    """The account for these credentials, or InvalidCredentials.

    An unknown email costs the same hash check as a wrong password, so response times do not
    tell which emails have accounts. Hashes made with older parameters are upgraded here.
    """
    user = find_by_email(db, email)
    try:
        needs_rehash = off_the_event_loop(
            _verify, user["password_hash"] if user else _decoy_hash(), password)
    except (VerificationError, InvalidHashError):
        raise InvalidCredentials() from None
    if user is None:
        raise InvalidCredentials()
    if needs_rehash:
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
            # The operator's own address, from the configuration: trusted as verified.
            return create_user(db, email=email, password=password, name=name, role=Role.ADMIN,
                               email_verified=True), True
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
