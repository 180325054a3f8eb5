"""The admission benchmark's baseline: a bare Flask endpoint that does one XADD and nothing
else (no JWT, no rate limit, no Lua, no schema), served by gunicorn with the API's settings.

    gunicorn --worker-class gevent ... "loadtests.bare_app:create_app('redis://...')"
"""

from __future__ import annotations

import redis
from flask import Flask, jsonify

STREAM = "bench:bare:stream"


def create_app(redis_url: str) -> Flask:
    app = Flask(__name__)
    # redis-py as it comes (not the API's tuned client): the baseline is what anyone would write.
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    @app.post("/xadd")
    def xadd():  # type: ignore[no-untyped-def]
        entry = client.xadd(STREAM, {"ticket_id": "bare", "seq": "0"}, maxlen=100_000, approximate=True)
        return jsonify({"entry_id": entry}), 202

    return app
