"""Lua scripts of the waiting room, loaded from `common/lua/*.lua` once per Redis client and
called by name. Each script's header says its KEYS, ARGV and return value."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import Script

LUA_DIR = Path(__file__).with_name("lua")


@cache
def _source(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()


class Scripts:
    """`Scripts(redis).admit(keys=[...], args=[...])` runs common/lua/admit.lua (EVALSHA)."""

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


_by_client: dict[int, Scripts] = {}


def scripts_for(client: redis.Redis) -> Scripts:
    """One registry per Redis client, so each script is registered once per process."""
    found = _by_client.get(id(client))
    if found is None or found._client is not client:
        found = Scripts(client)
        _by_client[id(client)] = found
    return found
