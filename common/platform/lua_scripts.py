"""Lua scripts, loaded once per Redis client and called by name.

Each domain keeps its scripts beside its modules (`common/<domain>/lua/<name>.lua`); names are
unique across domains. Each script's header says its KEYS, ARGV and return value. Snippets
several scripts need (the server clock in ms, unlinking a shopper's live ticket) are written
once in `common/platform/lua/library.lua`, which is put in front of every script.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import Script

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


_by_client: dict[int, Scripts] = {}


def scripts_for(client: redis.Redis) -> Scripts:
    """One registry per Redis client, so each script is registered once per process."""
    found = _by_client.get(id(client))
    if found is None or found._client is not client:
        found = Scripts(client)
        _by_client[id(client)] = found
    return found
