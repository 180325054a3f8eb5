"""The argon2 parameters are settings, and a hash made with older ones is upgraded on sign-in.

Through the HTTP contract: an account whose stored hash was made with other parameters (the
old default, argon2-cffi's 64 MiB, 3 passes, 4 lanes) signs in, and afterwards its stored hash
carries the current settings' parameters and still checks out; a second sign-in leaves it be.
"""

from __future__ import annotations

import pytest
from argon2 import extract_parameters

from api.app import create_app
from common.accounts import users
from common.platform.settings import SettingsError, load_settings
from tests.accounts import PASSWORD, unique_email

OLD_DEFAULT = users.password_hasher(memory_kib=64 * 1024, time_cost=3, parallelism=4)


@pytest.fixture
def hashing_restored():
    """The process-wide hasher as it was before the test (other tests' apps configure it)."""
    before = users._hasher
    yield
    users._hasher = before
    users._decoy_hash.cache_clear()


def _parameters(password_hash: str) -> tuple[int, int, int]:
    found = extract_parameters(password_hash)
    return found.memory_cost, found.time_cost, found.parallelism


def test_the_default_is_owasps_argon2id_minimum():
    settings = load_settings(app_env="test")
    assert (settings.password_hash_memory_kib, settings.password_hash_time_cost,
            settings.password_hash_parallelism) == (19456, 2, 1)
    assert _parameters(users._default_hasher().hash(PASSWORD)) == (19456, 2, 1)
    with pytest.raises(SettingsError, match="OWASP"):
        load_settings(app_env="production", jwt_secret_key="k" * 32, redis_url="redis://x",
                      mongodb_uri="mongodb://x", stripe_secret_key="sk", stripe_webhook_secret="wh",
                      password_hash_memory_kib=4096, password_hash_time_cost=2)


def test_a_hash_made_with_old_parameters_is_rehashed_on_sign_in(settings, clients, hashing_restored):
    email = unique_email()
    old_hash = OLD_DEFAULT.hash(PASSWORD)
    users.create_user(clients.db, email=email, password=PASSWORD, name="Old")
    clients.db.users.update_one({"email": email}, {"$set": {"password_hash": old_hash}})

    tuned = settings.model_copy(update={"password_hash_memory_kib": 12 * 1024,
                                        "password_hash_time_cost": 3})
    client = create_app(tuned, clients).test_client()
    signed_in = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.get_json()
    rehashed = clients.db.users.find_one({"email": email})["password_hash"]
    assert _parameters(old_hash) == (65536, 3, 4)
    assert _parameters(rehashed) == (12288, 3, 1)
    assert users.password_hasher(12288, 3, 1).verify(rehashed, PASSWORD)

    # Current parameters: nothing to upgrade, the hash stays as it is.
    again = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert again.status_code == 200
    assert clients.db.users.find_one({"email": email})["password_hash"] == rehashed
    # A wrong password changes nothing either.
    wrong = client.post("/api/auth/login", json={"email": email, "password": PASSWORD + "x"})
    assert wrong.status_code == 401
    assert clients.db.users.find_one({"email": email})["password_hash"] == rehashed


def test_new_accounts_are_hashed_with_the_settings_parameters(settings, clients, hashing_restored):
    tuned = settings.model_copy(update={"password_hash_memory_kib": 8 * 1024,
                                        "password_hash_time_cost": 5})
    client = create_app(tuned, clients).test_client()
    email = unique_email()
    made = client.post("/api/auth/register", json={"email": email, "password": PASSWORD, "name": "N"})
    assert made.status_code == 201, made.get_json()
    assert _parameters(clients.db.users.find_one({"email": email})["password_hash"]) == (8192, 5, 1)
