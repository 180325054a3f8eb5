"""The catalogue: anyone may read it; only admins change it."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from api.auth import BEARER, admin_required
from api.extensions import clients
from api.schemas import PageQuerySchema, RequestSchema
from common.shop import products

blp = Blueprint("products", __name__, url_prefix="/api/products", description="Catalogue")


class ProductSchema(ma.Schema):
    id = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    description = ma.fields.String(required=True)
    price_cents = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True, metadata={"description": "ISO 4217, upper case"})
    stock = ma.fields.Integer(required=True)
    image_url = ma.fields.String(required=True, allow_none=True)


class ProductPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ProductSchema), required=True)
    next_cursor = ma.fields.String(required=True, allow_none=True)


class ProductCreateSchema(RequestSchema):
    name = ma.fields.String(required=True, validate=ma.validate.And(
        ma.validate.Length(min=1, max=200), ma.validate.Regexp(r"\S", error="Must not be blank.")))
    description = ma.fields.String(validate=ma.validate.Length(max=5000))
    price_cents = ma.fields.Integer(required=True, strict=True,
                                    validate=ma.validate.Range(min=1, max=100_000_000))
    currency = ma.fields.String(required=True, validate=ma.validate.Regexp(
        r"^[A-Za-z]{3}$", error="Must be a three-letter ISO 4217 code."))
    stock = ma.fields.Integer(required=True, strict=True,
                              validate=ma.validate.Range(min=0, max=10_000_000))
    image_url = ma.fields.Url(allow_none=True, require_tld=False, schemes={"http", "https"},
                              validate=ma.validate.Length(max=2048))


class ProductChangeSchema(ProductCreateSchema):
    """PATCH: the create schema's fields, each optional (`partial=True`), at least one named."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "partial": True})

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError("Name at least one field to change.", "_schema")


@blp.route("")
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, ProductPageSchema)
def list_products(query: dict[str, Any]) -> dict[str, Any]:
    """The catalogue, newest first (public). Pass `next_cursor` back as `cursor` for more."""
    page = products.list_products(clients().db, limit=query["limit"], cursor=query["cursor"])
    return {"items": [products.product_to_public(doc) for doc in page.items],
            "next_cursor": page.next_cursor}


@blp.route("/<product_id>")
@blp.response(200, ProductSchema)
def get_product(product_id: str) -> dict[str, Any]:
    """One product (public)."""
    return products.product_to_public(products.get_product(clients().db, product_id))


@blp.route("", methods=["POST"])
@blp.doc(security=BEARER)
@admin_required
@blp.arguments(ProductCreateSchema)
@blp.response(201, ProductSchema)
@blp.alt_response(403, description="`forbidden`: not an admin")
def create_product(body: dict[str, Any]) -> dict[str, Any]:
    """Add a product (admin)."""
    return products.product_to_public(products.create_product(clients().db, **body))


@blp.route("/<product_id>", methods=["PATCH"])
@blp.doc(security=BEARER)
@admin_required
@blp.arguments(ProductChangeSchema)
@blp.response(200, ProductSchema)
@blp.alt_response(403, description="`forbidden`: not an admin")
def update_product(body: dict[str, Any], product_id: str) -> dict[str, Any]:
    """Change some of a product's fields (admin)."""
    return products.product_to_public(products.update_product(clients().db, product_id, body))


@blp.route("/<product_id>", methods=["DELETE"])
@blp.doc(security=BEARER)
@admin_required
@blp.response(204)
@blp.alt_response(403, description="`forbidden`: not an admin")
def delete_product(product_id: str) -> None:
    """Remove a product from the catalogue (admin)."""
    products.delete_product(clients().db, product_id)
