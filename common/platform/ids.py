"""Every id the shop makes, in one place, with its prefix.

Ids are random (`secrets`), so none can be guessed from another, and prefixed by what they name,
so a stray one in a log or a support ticket says what it is. The shapes are part of the public
contract: a sale is `sal_` and 16 hex, a ticket `tkt_<its sale's 16 hex>_<32 hex>` (the sale is
readable from the ticket, and so is its Redis hash tag), the rest a prefix and 32 hex.
"""

from __future__ import annotations

import os
import secrets
import uuid

SALE_PREFIX = "sal_"


def new_sale_id() -> str:
    return SALE_PREFIX + secrets.token_hex(8)


def new_ticket_id(sale_id: str) -> str:
    # The sale is readable from the ticket id; the random part makes it unguessable.
    return f"tkt_{sale_id[len(SALE_PREFIX):]}_{secrets.token_hex(16)}"


def new_order_id() -> str:
    return "ord_" + secrets.token_hex(16)


def new_product_id() -> str:
    return "prd_" + secrets.token_hex(16)


def new_user_id() -> str:
    return "usr_" + secrets.token_hex(16)


def new_token_family() -> str:
    """A login's refresh-token family."""
    return "fam_" + secrets.token_hex(16)


def new_token_id() -> str:
    """A refresh token's `jti`."""
    return secrets.token_hex(16)


def new_request_id() -> str:
    return uuid.uuid4().hex


def new_decider_name() -> str:
    # The pid tells an operator (and the crash tests) which process holds a sale.
    return f"decider-{os.getpid()}-{secrets.token_hex(4)}"


def new_lock_token(holder: str | None = None) -> str:
    """A lock holder's secret: only the holder can renew or release the lock."""
    return f"{holder}:{secrets.token_hex(4)}" if holder else secrets.token_hex(8)
