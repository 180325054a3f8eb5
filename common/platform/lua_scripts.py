"""Lua scripts, loaded once per Redis client and called by name.

Each domain keeps its scripts beside its modules (`common/<domain>/lua/<name>.lua`); names are
unique across domains. Each script's header says its KEYS, ARGV and return value. Snippets
several scripts need (the server clock in ms, unlinking a shopper's live ticket) are written
once in `common/platform/lua/library.lua`, which is put in front of every script.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hiredis
import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    NoScriptError,
    TimeoutError,
    TryAgainError,
)

COMMON_DIR = Path(__file__).resolve().parent.parent
LIBRARY = Path(__file__).with_name("lua") / "library.lua"


@cache
def _paths() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(COMMON_DIR.glob("*/lua/*.lua")):
        if path == LIBRARY:
            continue
        if path.stem in found:
            raise RuntimeError(f"two Lua scripts named {path.stem}: {found[path.stem]} and {path}")
        found[path.stem] = path
    return found


@cache
def _source(name: str) -> str:
    try:
        path = _paths()[name]
    except KeyError:
        raise AttributeError(f"no Lua script named {name}") from None
    return LIBRARY.read_text() + "\n" + path.read_text()


class Scripts:
    """`Scripts(redis).admit(keys=[...], args=[...])` runs common/flash_sale/lua/admit.lua
    (EVALSHA)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._registered: dict[str, Script] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        script = self._registered.get(name)
        if script is None:
            script = self._client.register_script(_source(name))
            self._registered[name] = script
        return script

    def call_hot(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """What `self.<name>(keys=keys, args=args)` returns, for a call on the hot path.

        redis-py encodes a command argument by argument and wraps each call in its retry and
        dispatch layers: for admit.lua's 12 keys and 7 arguments that was about 40 us of a
        worker's CPU per admission, packing alone 20 us (hiredis packs the same in 4 us). Here the
        command is packed by hiredis in one go and sent on a connection of the client's own pool
        (on a Redis Cluster, the pool of the node that owns the first key's slot). Whatever is not
        the plain case takes the ordinary call: a script the server does not have yet (it loads
        it), a moved slot (it follows it), a connection that failed (it reconnects and sends the
        call again). A timeout is raised as redis-py raises it, without a retry.

        Only for a script idempotent on its arguments (admit.lua is, on its ticket id): a
        connection can fail after Redis ran the call, and its reply is lost. The script, not
        the sender, makes one call one effect: a "send only when it surely did not arrive" rule
        here would still leave the ordinary call's resend and a cluster client's retries, and
        would turn every dropped reply into a failed admission.
        """
        script: Script = getattr(self, name)
        pool = self._pool_for(keys[0])
        packed = hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
        connection = pool.get_connection()
        try:
            connection.send_packed_command([packed])
            return connection.read_response()
        except (NoScriptError, ConnectionError, AskError, TryAgainError, ClusterDownError):
            pass  # the ordinary call below loads the script, reconnects or follows the slot
        except TimeoutError:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)
        return script(keys=keys, args=args)

    def call_pipelined(self, name: str, calls: Iterable[tuple[list[str], list[Any]]],
                       depth: int = 2) -> Iterator[Any]:
        """The replies of `self.<name>(keys, args)` for each of `calls`, in order, with up to
        `depth` calls in flight on one connection: Redis runs one call while the next is packed
        and sent, instead of waiting for it (a placement of 100,000 lobby tickets in 50 calls
        spent a third of its time so). Every call must go to the same node (keys of one slot).

        The first call is an ordinary one (it loads the script if the server lacks it). Any
        error after that disconnects the connection (replies still in flight are lost) and is
        raised: the caller must be able to find where it stopped, as for a lost reply.
        """
        script: Script = getattr(self, name)
        remaining = iter(calls)
        first = next(remaining, None)
        if first is None:
            return
        yield script(keys=first[0], args=first[1])
        pool = self._pool_for(first[0][0])
        connection = pool.get_connection()
        in_flight = 0
        try:
            for keys, args in remaining:
                connection.send_packed_command(
                    [hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))])
                in_flight += 1
                if in_flight >= depth:
                    in_flight -= 1
                    yield connection.read_response()
            while in_flight:
                in_flight -= 1
                yield connection.read_response()
        except BaseException:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)

    def _pool_for(self, key: str) -> redis.ConnectionPool:
        client: Any = self._client
        if isinstance(client, RedisCluster):
            return client.get_redis_connection(client.get_node_from_key(key)).connection_pool
        return client.connection_pool


_by_client: dict[int, Scripts] = {}


def scripts_for(client: redis.Redis) -> Scripts:
    """One registry per Redis client, so each script is registered once per process."""
    found = _by_client.get(id(client))
    if found is None or found._client is not client:
        found = Scripts(client)
        _by_client[id(client)] = found
    return found
