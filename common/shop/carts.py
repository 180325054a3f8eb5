"""One cart per user: `carts` documents `{_id: user_id, items: [{product_id, quantity}], version}`.

Every change is a compare-and-set on `version`, so concurrent edits of one cart never lose an
item and a checkout takes exactly the cart it priced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from common.platform.errors import Conflict, InsufficientStock, MixedCurrencies
from common.shop.products import get_product, products_by_id

Items = list[dict[str, Any]]
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class CartLine:
    product: dict[str, Any]
    quantity: int

    @property
    def line_total_cents(self) -> int:
        return int(self.product["price_cents"]) * self.quantity


@dataclass(frozen=True)
class PricedCart:
    """A cart with today's prices. Items whose product was deleted are left out."""

    lines: list[CartLine]
    version: int | None

    @property
    def currencies(self) -> set[str]:
        """One currency, or none for an empty cart; several only when an admin changed a
        product's currency after it went into the cart."""
        return {line.product["currency"] for line in self.lines}

    def single_currency(self) -> str:
        """The currency to charge in; MixedCurrencies unless there is exactly one."""
        if len(self.currencies) != 1:
            raise MixedCurrencies(details={"currencies": sorted(self.currencies)})
        return next(iter(self.currencies))

    @property
    def total_cents(self) -> int:
        return sum(line.line_total_cents for line in self.lines)


# A cart's version: None while the user has no cart document yet.
def _read(db: Database, user_id: str) -> tuple[Items, int | None]:
    doc = db.carts.find_one({"_id": user_id})
    if doc is None:
        return [], None
    return list(doc.get("items") or []), int(doc.get("version") or 0)


def _compare_and_set(db: Database, user_id: str, version: int | None, items: Items) -> bool:
    if version is None:
        try:
            db.carts.insert_one({"_id": user_id, "items": items, "version": 1})
            return True
        except DuplicateKeyError:
            return False
    # Version 0 is a document written without one: {"version": None} matches a missing field.
    expected = version or None
    matched = db.carts.update_one({"_id": user_id, "version": expected},
                                  {"$set": {"items": items, "version": version + 1}})
    return matched.matched_count == 1


def _change(db: Database, user_id: str, change: Callable[[Items], Items]) -> Items:
    for _ in range(MAX_ATTEMPTS):
        items, version = _read(db, user_id)
        new_items = change(items)
        if _compare_and_set(db, user_id, version, new_items):
            return new_items
    raise Conflict("The cart is changing too fast; try again.")


def priced_cart(db: Database, user_id: str) -> PricedCart:
    items, version = _read(db, user_id)
    products = products_by_id(db, (item["product_id"] for item in items))
    lines = [CartLine(products[item["product_id"]], int(item["quantity"]))
             for item in items if item["product_id"] in products]
    return PricedCart(lines, version)


def set_quantity(db: Database, user_id: str, product_id: str, quantity: int) -> PricedCart:
    """Put `quantity` of a product in the cart (replacing any earlier quantity).

    NotFound for an unknown product, InsufficientStock beyond its stock, MixedCurrencies when
    the cart already holds products priced in another currency.
    """
    product = get_product(db, product_id)
    if quantity > product["stock"]:
        raise InsufficientStock(details={"product_id": product_id, "available": product["stock"],
                                         "requested": quantity})

    def change(items: Items) -> Items:
        others = [item for item in items if item["product_id"] != product_id]
        currencies = {p["currency"] for p in
                      products_by_id(db, (item["product_id"] for item in others)).values()}
        if currencies - {product["currency"]}:
            raise MixedCurrencies(details={"currencies": sorted(currencies | {product["currency"]})})
        if any(item["product_id"] == product_id for item in items):
            return [{"product_id": product_id, "quantity": quantity}
                    if item["product_id"] == product_id else item for item in items]
        return [*items, {"product_id": product_id, "quantity": quantity}]

    _change(db, user_id, change)
    return priced_cart(db, user_id)


def remove_item(db: Database, user_id: str, product_id: str) -> PricedCart:
    """Take a product out of the cart (idempotent)."""
    _change(db, user_id, lambda items: [i for i in items if i["product_id"] != product_id])
    return priced_cart(db, user_id)


def take(db: Database, user_id: str, cart: PricedCart) -> bool:
    """Empty the cart if it is still exactly `cart` (the one just priced); False otherwise."""
    if cart.version is None:
        return False
    return _compare_and_set(db, user_id, cart.version, [])


def put_back(db: Database, user_id: str, items: Items) -> None:
    """Return items to the cart after a failed checkout, keeping anything added meanwhile."""

    def change(current: Items) -> Items:
        present = {item["product_id"] for item in current}
        return current + [item for item in items if item["product_id"] not in present]

    _change(db, user_id, change)
