"""What every request schema of the shop shares: unknown fields are refused (422), so nobody
can set a price, an owner or a status by adding a field; lists take `limit` and `cursor`."""

from __future__ import annotations

import marshmallow as ma

from common.platform.pagination import MAX_PAGE_SIZE


class RequestSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class PageQuerySchema(ma.Schema):
    limit = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=MAX_PAGE_SIZE))
    cursor = ma.fields.String(load_default=None, validate=ma.validate.Length(max=512),
                              metadata={"description": "next_cursor of the previous page"})
