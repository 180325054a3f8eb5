"""A Redis pub/sub subscription followed by a background thread (a greenlet under gevent) that
comes back after an outage, for the processes' in-memory copies of shared state (the token
denylist, the ticket feed): start, stop, one warning per outage, a retry every few seconds."""

from __future__ import annotations

import logging
import threading
from typing import Self

from redis.exceptions import RedisError

log = logging.getLogger("common.subscriptions")


class Subscription:
    """Subclasses say how to follow (`_follow`, returning when the subscription drops) and
    what to forget when it is interrupted (`_interrupted`)."""

    thread_name = "subscription"
    outage_message = "subscription interrupted; retrying"

    def __init__(self, retry_seconds: float = 1.0) -> None:
        self.retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except (RedisError, OSError, ValueError) as exc:
                if not self._failing and not self._stop.is_set():  # one warning per outage
                    log.warning(self.outage_message, extra={"error": f"{type(exc).__name__}: {exc}",
                                                            "subscription": self.thread_name})
                self._failing = True
            self._interrupted()
            self._stop.wait(self.retry_seconds)

    def _follow(self) -> None:
        raise NotImplementedError

    def _interrupted(self) -> None:
        """Called each time the subscription stops being followed."""
