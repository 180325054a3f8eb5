"""MongoDB collections and indexes, created at start-up (idempotent).

Collections are created explicitly: the embedded wire server refuses to create one implicitly
inside a transaction, and a real replica set prefers it too.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import CollectionInvalid

# collection name -> indexes. Each domain module's collections are listed here.
INDEXES: dict[str, list[IndexModel]] = {
    "users": [IndexModel([("email", ASCENDING)], unique=True, name="email_unique"),
              # Partial: accounts made before the key existed have none until the backfill.
              IndexModel([("email_key", ASCENDING)], unique=True, name="email_key_unique",
                         partialFilterExpression={"email_key": {"$type": "string"}})],
    # Hashed one-time links (common/accounts/email_verification.py), dropped once expired.
    "email_verifications": [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0,
                                       name="expired"),
                            IndexModel([("user_id", ASCENDING)], name="by_user")],
    # No `_id` in secondary indexes: the embedded wire server cannot index it (inserts fail).
    "products": [IndexModel([("created_at", DESCENDING)], name="newest")],
    "carts": [],
    "orders": [
        IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)], name="user_newest"),
        IndexModel([("payment_intent_id", ASCENDING)], unique=True, name="payment_intent_unique",
                   partialFilterExpression={"payment_intent_id": {"$type": "string"}}),
        IndexModel([("sale_id", ASCENDING)], name="by_sale"),
    ],
    "sales": [IndexModel([("starts_at", ASCENDING)], name="by_start")],
    "webhook_events": [IndexModel([("received_at", ASCENDING)], name="by_received")],
    "refresh_tokens": [IndexModel([("family", ASCENDING)], name="by_family")],
    "dead_letters": [IndexModel([("created_at", DESCENDING)], name="newest")],
    # The operator's actions (auditing/operator_log.py), paged newest first, all or per sale.
    "audit_log": [IndexModel([("created_at", DESCENDING)], name="newest"),
                  IndexModel([("sale_id", ASCENDING), ("created_at", DESCENDING)],
                             name="sale_newest")],
}


def ensure_schema(db: Database) -> None:
    existing = set(db.list_collection_names())
    for name, indexes in INDEXES.items():
        if name not in existing:
            try:
                db.create_collection(name)
            except CollectionInvalid:
                pass  # created concurrently by another process
        if indexes:
            db[name].create_indexes(indexes)
