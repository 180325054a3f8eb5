"""The admission fast path's token check accepts only what PyJWT (flask-jwt-extended) accepts,
and only the shape this API issues; everything else goes on to the full path."""

from __future__ import annotations

import base64
import json
import time

import jwt as pyjwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.auth import REQUIRED_CLAIMS
from common.accounts.verified_tokens import AccessTokenCheck
from loadtests.shop import mint_access_token

SECRET = "s" * 48
CHECK = AccessTokenCheck(SECRET, REQUIRED_CLAIMS)


def _claims(**overrides):
    now = int(time.time())
    claims = {"sub": "usr_1", "iat": now, "nbf": now, "exp": now + 600, "jti": "j1",
              "type": "access", "fresh": False, "role": "customer", "fam": "fam_1"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not ...}


def _encode(claims, key=SECRET, **kwargs):
    return pyjwt.encode(claims, key, algorithm=kwargs.pop("algorithm", "HS256"), **kwargs)


def _pyjwt_accepts(token):
    try:
        claims = pyjwt.decode(token, SECRET, algorithms=["HS256"], options={"require": list(REQUIRED_CLAIMS)})
    except pyjwt.PyJWTError:
        return None
    return claims if claims.get("type") == "access" and isinstance(claims.get("sub"), str) else None


def test_an_issued_access_token_gives_the_claims_pyjwt_gives():
    token = mint_access_token(SECRET, "usr_42")
    assert CHECK.check(token) == _pyjwt_accepts(token) and CHECK.check(token)["sub"] == "usr_42"


REFUSED = {
    "another key": lambda: _encode(_claims(), key="k" * 48),
    "expired": lambda: _encode(_claims(exp=int(time.time()) - 1)),
    "not yet valid": lambda: _encode(_claims(nbf=int(time.time()) + 60)),
    "issued in the future": lambda: _encode(_claims(iat=int(time.time()) + 60)),
    "a refresh token": lambda: _encode(_claims(type="refresh")),
    "no jti": lambda: _encode(_claims(jti=...)),
    "no exp": lambda: _encode(_claims(exp=...)),
    "sub not a string": lambda: _encode(_claims(sub=7)),
    "exp as text": lambda: _encode(_claims(exp=str(int(time.time()) + 600))),
    "another header": lambda: _encode(_claims(), headers={"kid": "k1"}),
    "alg none": lambda: _encode(_claims(), key=None, algorithm="none"),
    "HS512": lambda: _encode(_claims(), key=SECRET * 2, algorithm="HS512"),
    "signature padded": lambda: mint_access_token(SECRET, "usr_1") + "=",
    "signature cut": lambda: mint_access_token(SECRET, "usr_1")[:-1],
    "payload swapped": lambda: _swap_payload(mint_access_token(SECRET, "usr_1")),
    "junk": lambda: "not a token",
}


def _swap_payload(token):
    header, _, signature = token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps(_claims(sub="usr_admin")).encode()).rstrip(b"=")
    return f"{header}.{payload.decode()}.{signature}"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_anything_else_is_refused(name):
    assert CHECK.check(REFUSED[name]()) is None


@settings(max_examples=300, deadline=None)
@given(claims=st.dictionaries(
    st.sampled_from(["sub", "iat", "nbf", "exp", "jti", "type", "fam", "role"]),
    st.one_of(st.none(), st.booleans(), st.integers(-10, 2**33), st.floats(allow_nan=False),
              st.text(max_size=8), st.sampled_from(["access", "refresh", "usr_1"]),
              st.integers(int(time.time()) - 100, int(time.time()) + 1000))),
    key=st.sampled_from([SECRET, "k" * 48]))
def test_whatever_the_check_accepts_pyjwt_accepts_alike(claims, key):
    token = _encode(claims, key=key)
    accepted = CHECK.check(token)
    if accepted is not None:
        assert accepted == _pyjwt_accepts(token)
