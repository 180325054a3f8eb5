"""Pacing by Stripe's health: the decider lowers a sale's pace when Stripe answers errors or
slowly, then pauses decisions, and restores it step by step once Stripe is healthy again, so
reservations are not handed out faster than shoppers can pay (CrowdHandler's autotune lowers
its rate when more than 2% of requests take over 5 s; the thresholds here are settings).

Every PaymentIntent the deciders create is recorded (`record_call`) in per-second buckets in
Redis, so every decider sees the same sliding window. The pace it sets is the sale's counters'
`auto_pace` (decisions a second; 0 = paused), which reserve_batch.lua takes together with the
operator's `outflow_per_second` (the lower wins), and `auto_reason`, which
`GET /api/sales/<id>` shows as `pacing: {mode: "auto", per_second, reason}`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

from common.flash_sale import sale_keys
from common.platform import metrics

log = logging.getLogger("common.flash_sale.health_pacing")

# Stripe is one service for every sale: its window is global (one key a second).
HEALTH_KEY_PREFIX = "flashsale:stripe_health:"


@dataclass(frozen=True)
class HealthThresholds:
    window_seconds: int = 30
    min_calls: int = 10
    max_error_rate: float = 0.05
    slow_call_ms: int = 2_000
    max_slow_rate: float = 0.02
    # At most one change of pace per this many seconds (down or up).
    step_seconds: float = 5.0
    # The pace stepped down from when no pace was set and no rate was measured yet; above it
    # (or above the operator's pace) a recovered sale is back to no automatic pace.
    start_per_second: float = 50.0
    floor_per_second: float = 0.5
    enabled: bool = True


@dataclass(frozen=True)
class Health:
    calls: int = 0
    errors: int = 0
    slow: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    @property
    def slow_rate(self) -> float:
        return self.slow / self.calls if self.calls else 0.0

    def unhealthy(self, limits: HealthThresholds) -> bool:
        return self.calls >= limits.min_calls and (
            self.error_rate > limits.max_error_rate or self.slow_rate > limits.max_slow_rate)


def record_call(redis_client: redis.Redis, seconds: float, ok: bool, limits: HealthThresholds) -> None:
    """One Stripe call's outcome, in this second's bucket (one round trip)."""
    key = f"{HEALTH_KEY_PREFIX}{int(time.time())}"
    pipe = redis_client.pipeline(transaction=False)
    pipe.hincrby(key, "calls", 1)
    if not ok:
        pipe.hincrby(key, "errors", 1)
    if seconds * 1000 >= limits.slow_call_ms:
        pipe.hincrby(key, "slow", 1)
    pipe.expire(key, limits.window_seconds + 60)
    pipe.execute()


def read_health(redis_client: redis.Redis, limits: HealthThresholds) -> Health:
    """Stripe's calls, errors and slow calls over the last window_seconds."""
    now = int(time.time())
    pipe = redis_client.pipeline(transaction=False)
    for second in range(now - limits.window_seconds + 1, now + 1):
        pipe.hmget(f"{HEALTH_KEY_PREFIX}{second}", "calls", "errors", "slow")
    calls = errors = slow = 0
    for bucket in pipe.execute():
        calls += int(bucket[0] or 0)
        errors += int(bucket[1] or 0)
        slow += int(bucket[2] or 0)
    return Health(calls, errors, slow)


def _reason(health: Health, limits: HealthThresholds) -> str:
    return (f"Stripe: {health.error_rate:.0%} errors, {health.slow_rate:.0%} of calls over "
            f"{limits.slow_call_ms} ms in the last {limits.window_seconds} s")


def adjust_pace(redis_client: redis.Redis, sale_id: str, limits: HealthThresholds,
                operator_pace: float | None) -> float | bool | None:
    """One step of the automatic pace, at most every step_seconds: halve it (from the operator's
    pace, else the measured rate, else start_per_second) while Stripe is unhealthy, down to a
    pause (0) below floor_per_second; double it back while healthy, until it is no lower than
    the operator's pace or start_per_second, then remove it. Returns the new pace (None: no
    automatic pace), or False when nothing changed. Only the decider holding the sale's lock
    calls it, so its read-then-write does not race."""
    if not limits.enabled:
        return False
    counters = sale_keys.counters_key(sale_id)
    auto, changed_ms, rate = redis_client.hmget(counters, "auto_pace", "auto_changed_ms", "rate")
    now_ms = int(time.time() * 1000)
    if now_ms - int(changed_ms or 0) < limits.step_seconds * 1000:
        return False
    health = read_health(redis_client, limits)
    current = float(auto) if auto not in (None, "") else None
    ceiling = min(operator_pace or limits.start_per_second, limits.start_per_second)
    new: float | None
    if health.unhealthy(limits):
        base = current if current is not None else (
            operator_pace or min(float(rate or 0) or limits.start_per_second, limits.start_per_second))
        new = base / 2
        if new < limits.floor_per_second:
            new = 0.0
        if current is not None and new == current:
            return False
        reason = _reason(health, limits)
        action = "auto_pause" if new == 0 else "auto_pace_down"
    elif current is not None:
        new = max(limits.floor_per_second, current * 2)
        reason = "recovering: Stripe is healthy again"
        if new >= ceiling:
            new = None
            reason = ""
        action = "auto_pace_up"
    else:
        return False
    pipe = redis_client.pipeline(transaction=False)
    if new is None:
        pipe.hdel(counters, "auto_pace", "auto_reason")
    else:
        pipe.hset(counters, mapping={"auto_pace": repr(new), "auto_reason": reason})
    pipe.hset(counters, "auto_changed_ms", now_ms)
    pipe.execute()
    metrics.OPERATOR_ACTIONS.labels(action).inc()
    log.warning("sale pace set by Stripe's health", extra={
        "sale_id": sale_id, "before": current, "after": new, "calls": health.calls,
        "errors": health.errors, "slow": health.slow, "reason": reason or "recovered"})
    return new
