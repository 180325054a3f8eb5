"""The catalogue: products with a price, a currency and a stock count.

Stock here is the catalogue's count; paying an order takes it (common/billing/payments.py), checkout
only checks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database

from common.platform.clock import utc_now
from common.platform.errors import NotFound
from common.platform.ids import new_product_id
from common.platform.pagination import Page, newest_first

# What an admin may set; everything else (id, times) is the shop's.
WRITABLE_FIELDS = ("name", "description", "price_cents", "currency", "stock", "image_url")


def product_to_public(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"], "name": doc["name"], "description": doc.get("description", ""),
        "price_cents": doc["price_cents"], "currency": doc["currency"], "stock": doc["stock"],
        "image_url": doc.get("image_url"),
    }


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(WRITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not product fields: {sorted(unknown)}")
    cleaned = dict(fields)
    if "currency" in cleaned:
        cleaned["currency"] = cleaned["currency"].upper()
    return cleaned


def create_product(db: Database, *, name: str, price_cents: int, currency: str, stock: int,
                   description: str = "", image_url: str | None = None) -> dict[str, Any]:
    now = utc_now()
    doc = {"_id": new_product_id(), **_clean({
        "name": name, "description": description, "price_cents": price_cents,
        "currency": currency, "stock": stock, "image_url": image_url,
    }), "created_at": now, "updated_at": now}
    db.products.insert_one(doc)
    return doc


def get_product(db: Database, product_id: str) -> dict[str, Any]:
    doc = db.products.find_one({"_id": product_id})
    if doc is None:
        raise NotFound("No such product.")
    return doc


def products_by_id(db: Database, product_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    ids = list(dict.fromkeys(product_ids))
    if not ids:
        return {}
    return {doc["_id"]: doc for doc in db.products.find({"_id": {"$in": ids}})}


def update_product(db: Database, product_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply `changes` (a subset of WRITABLE_FIELDS) and return the product as it now is."""
    cleaned = _clean(changes)
    if not cleaned:
        return get_product(db, product_id)
    doc = db.products.find_one_and_update(
        {"_id": product_id}, {"$set": {**cleaned, "updated_at": utc_now()}},
        return_document=ReturnDocument.AFTER)
    if doc is None:
        raise NotFound("No such product.")
    return doc


def delete_product(db: Database, product_id: str) -> None:
    """Remove a product from the catalogue; orders keep their own copy of what was bought."""
    if db.products.delete_one({"_id": product_id}).deleted_count == 0:
        raise NotFound("No such product.")


def list_products(db: Database, *, limit: int, cursor: str | None = None) -> Page:
    """The catalogue, newest first, one page at a time."""
    return newest_first(db.products, {}, limit=limit, cursor=cursor)
