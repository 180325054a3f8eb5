"""Files that hold a secret (the JWT key, a generated password, services.json with the Stripe
key): created readable by their owner only. The mode is given to open(): a file created
world-readable and chmod-ed after could be opened by another user in between, and would stay
readable through that handle."""

from __future__ import annotations

import os
from pathlib import Path


def create_private(path: Path, text: str) -> None:
    """Create `path` (it must not exist) with mode 0600 and write `text` to it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a file only its owner can read."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # O_EXCL: never write through a file or link left there
    create_private(tmp, text)
    tmp.replace(path)
