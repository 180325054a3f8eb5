"""A shopper's ticket as a live stream of Server-Sent Events (`GET /api/tickets/<id>/events`).

What is sent, and the one Redis subscription per process behind every stream, live in
common/flash_sale/ticket_events.py; this edge authenticates (access token, or the ticket's own
`stream_token` for EventSource, which cannot send headers), frames the events, and notices at
once when a client goes away: under gunicorn's gevent worker the connection's socket is
watched, and an SSE client never sends anything after its request, so a readable socket means
it closed. Its stream ends there: follower, greenlet and socket are let go, not kept until the
next ping fails.

Streams open at once are capped per ticket and per client address, across every worker
(common/flash_sale/stream_slots.py): beyond, 429 `too_many_streams` with Retry-After.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, request
from flask_jwt_extended import verify_jwt_in_request
from flask_smorest import Blueprint
from redis.cluster import RedisCluster

from api import stream_tokens
from api.auth import BEARER, current_user_id
from api.extensions import client_address, clients, limiter
from api.schemas import ticket_body
from common.flash_sale import ticket_events
from common.flash_sale.stream_slots import StreamSlots
from common.flash_sale.ticket_events import Follower, TicketFeed
from common.platform import metrics
from common.platform.errors import NotFound, Unauthorized

log = logging.getLogger("api.ticket_events")

blp = Blueprint("ticket_events", __name__, url_prefix="/api/tickets",
                description="Live ticket updates (Server-Sent Events)")
_FEED_START = threading.Lock()
RETRY_FRAME = b"retry: 3000\n\n"


def feed(app: Flask) -> TicketFeed:
    """This process's feed, started on first use (after gunicorn forked the worker)."""
    found = app.extensions.get("flashsale.ticket_feed")
    if found is None:
        with _FEED_START:
            found = app.extensions.get("flashsale.ticket_feed")
            if found is None:
                sales_redis = app.extensions["flashsale.clients"].sales_redis
                found = app.extensions["flashsale.ticket_feed"] = TicketFeed(
                    sales_redis, subscriber=_subscriber(sales_redis), slots=stream_slots(app)).start()
    return found  # type: ignore[no-any-return]


def stream_slots(app: Flask) -> StreamSlots:
    """This process's caps on open streams (the feed renews the slots of its streams)."""
    found = app.extensions.get("flashsale.stream_slots")
    if found is None:
        config = app.extensions["flashsale.settings"]
        # Slots live beside the rate limits (REDIS_URL): an address's streams span every sale.
        found = app.extensions["flashsale.stream_slots"] = StreamSlots(
            app.extensions["flashsale.clients"].redis, config.stream_max_per_ticket,
            config.stream_max_per_address)
    return found  # type: ignore[no-any-return]


def _subscriber(sales_redis: Any) -> Any:
    """Where the feed subscribes: the sales Redis, or one node of a Redis Cluster (a PUBLISH
    reaches the subscribers on every node of the cluster)."""
    if isinstance(sales_redis, RedisCluster):
        return sales_redis.get_redis_connection(sales_redis.get_random_node())
    return sales_redis


def _last_event_id() -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def _frame(event: ticket_events.TicketEvent | None) -> bytes:
    if event is None:
        return b": ping\n\n"
    # ticket_body, not TicketSchema().dump: the same body (tests/unit/test_ticket_body.py)
    # without marshmallow's walk over every field, on every event of every stream.
    data = json.dumps(ticket_body(event.ticket), separators=(",", ":"))
    return f"event: ticket\nid: {event.version}\ndata: {data}\n\n".encode()


def _watch_client(environ: dict[str, Any], follower: Follower) -> Any:
    """Close the follower as soon as the client's socket turns readable (it hung up). Only
    under gunicorn's gevent worker; elsewhere a gone client shows at the next write."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return None
    try:
        from gevent import get_hub
    except ImportError:
        return None
    watcher = get_hub().loop.io(sock.fileno(), 1)  # 1: readable

    def readable() -> None:
        watcher.stop()
        follower.close()

    watcher.start(readable)
    return watcher


@blp.route("/<ticket_id>/events", methods=["GET"])
@blp.doc(security=[*BEARER, {}], responses={"200": {
    "description": "`text/event-stream`: `event: ticket`, `id: <version>`, `data: <ticket>`; "
                   "the ticket at once, then every change; `: ping` every 15 s; ends after a "
                   "final status",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    parameters=[{"in": "query", "name": "stream_token", "required": False,
                 "schema": {"type": "string"},
                 "description": "The ticket's own `stream_token`, instead of the header "
                                "(valid for at most an hour; every ticket answer carries a fresh "
                                "one)"}])
@blp.alt_response(401, description="No or bad authentication, or an expired stream_token")
@blp.alt_response(404, description="No such ticket, or someone else's")
@blp.alt_response(429, description="`too_many_streams`: this ticket, or this client address, has "
                                   "as many streams open as allowed (STREAM_MAX_PER_TICKET, "
                                   "STREAM_MAX_PER_ADDRESS); with Retry-After")
@limiter.exempt  # capped by open streams instead (common/flash_sale/stream_slots.py)
def ticket_event_stream(ticket_id: str) -> Response:
    """Follow the caller's ticket live: position and ETA while queued (at most once a
    second), each status change at once. `Last-Event-ID` resumes: the current ticket is sent
    only if it is newer. An open stream counts as its owner being present."""
    token = request.args.get("stream_token")
    redis_client = clients().sales_redis
    if token is not None:
        if not stream_tokens.valid(ticket_id, token):
            raise Unauthorized("This stream token has expired or does not open this ticket; "
                               "read the ticket again for a fresh one.")
    else:
        verify_jwt_in_request()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ticket_feed, slots = feed(app), stream_slots(app)
    # Followed before it is read: one read, and no change published in between is missed.
    follower, fields, progress = ticket_events.follow_and_read(ticket_feed, redis_client, ticket_id)
    try:
        if token is None and fields.get("user_id") != current_user_id():
            raise NotFound("No such ticket.")
        slot = follower.slot = slots.take(ticket_id, client_address())  # TooManyStreams: 429
        if fields.get("status") in ticket_events.WAITING:
            ticket_events.note_presence(redis_client, fields["sale_id"], [ticket_id])
    except BaseException:
        ticket_feed.forget(follower)
        raise
    environ = request.environ
    last_event_id = _last_event_id()

    def body() -> Iterator[bytes]:
        watched: list[tuple[Follower, Any]] = []
        ended = "error"

        def on_follow(follower: Follower) -> None:
            watched.append((follower, _watch_client(environ, follower)))

        metrics.TICKET_STREAMS.inc()
        events = ticket_events.follow_ticket(ticket_feed, redis_client, fields, progress,
                                             last_event_id, on_follow=on_follow, follower=follower)
        try:
            # Headers go out with the first bytes: a resumed stream with nothing newer must not
            # leave its client waiting for them. `retry` is EventSource's reconnection delay.
            # A new stream's first event is at hand: it leaves with them, in one send.
            first = next(events, None) if last_event_id is None else None
            yield RETRY_FRAME + (_frame(first) if first is not None else b"")
            for event in events:
                yield _frame(event)
            # The follower is closed only when its client hung up; otherwise a final status.
            ended = "client_gone" if watched and watched[0][0].closed else "final"
        except GeneratorExit:
            ended = "client_gone"
            raise
        finally:
            events.close()
            for _follower, watcher in watched:
                if watcher is not None:
                    watcher.stop()
                    watcher.close()
            metrics.TICKET_STREAMS.dec()
            metrics.TICKET_STREAM_ENDS.labels(ended).inc()

    def closed() -> None:
        # Also when the body never ran (its generator's `finally` only runs once started).
        ticket_feed.forget(follower)
        try:
            slots.release(slot)
        except Exception:  # its lease ends it within a minute
            log.warning("stream slot not released", exc_info=True)

    response = Response(body(), mimetype="text/event-stream", headers={
        "Cache-Control": "no-cache, no-store",
        "X-Accel-Buffering": "no",  # nginx: pass each event on at once
    })
    response.call_on_close(closed)
    return response
