"""Flask extensions shared by the blueprints, bound to the app in `create_app`."""

from __future__ import annotations

from flask import current_app
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from api.errors import ContractApi
from common.accounts import revocations
from common.platform.clients import Clients
from common.platform.settings import Settings

api = ContractApi()
jwt = JWTManager()


def client_address() -> str:
    return get_remote_address() or "unknown"


limiter = Limiter(key_func=client_address, headers_enabled=True, strategy="moving-window")


def clients() -> Clients:
    return current_app.extensions["flashsale.clients"]  # type: ignore[no-any-return]


def settings() -> Settings:
    return current_app.extensions["flashsale.settings"]  # type: ignore[no-any-return]


def denylist() -> revocations.DenylistCopy:
    """This process's copy of the token denylist (common/accounts/revocations.py)."""
    return revocations.denylist_copy(clients())
