"""Every resource blueprint of the public API, registered in one list."""

from __future__ import annotations

from flask_smorest import Api


def register_resources(api: Api) -> None:
    from api import (
        admin,
        auth,
        cart,
        orders,
        products,
        public_config,
        sales,
        ticket_events,
        tickets,
        webhooks,
    )

    for module in (auth, products, cart, orders, public_config, sales, admin, tickets,
                   ticket_events, webhooks):
        api.register_blueprint(module.blp)
