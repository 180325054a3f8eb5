"""A priced cart (common/shop/carts.py) without MongoDB: line totals, the cart's total and the
one-currency rule checkout relies on."""

from __future__ import annotations

import pytest

from common.platform.errors import MixedCurrencies
from common.shop.carts import CartLine, PricedCart


def product(product_id: str, price_cents: int, currency: str = "USD") -> dict[str, object]:
    return {"_id": product_id, "name": product_id, "price_cents": price_cents,
            "currency": currency, "stock": 10}


def test_lines_and_the_cart_are_priced_in_minor_units() -> None:
    cart = PricedCart([CartLine(product("a", 1500), 3), CartLine(product("b", 99), 1)], version=4)
    assert [line.line_total_cents for line in cart.lines] == [4500, 99]
    assert cart.total_cents == 4599
    assert cart.single_currency() == "USD"


def test_an_empty_cart_costs_nothing_and_has_no_currency_to_charge_in() -> None:
    empty = PricedCart([], version=None)
    assert empty.total_cents == 0 and empty.currencies == set()
    with pytest.raises(MixedCurrencies):
        empty.single_currency()


def test_a_cart_mixing_currencies_names_them_and_cannot_be_charged() -> None:
    cart = PricedCart([CartLine(product("a", 100, "USD"), 1), CartLine(product("b", 100, "EUR"), 1)],
                      version=1)
    with pytest.raises(MixedCurrencies) as refused:
        cart.single_currency()
    assert refused.value.details == {"currencies": ["EUR", "USD"]}
