"""Password hashing keeps the gevent event loop free (common/accounts/users.py).

Under gunicorn's gevent worker a hash on the loop (~0.2 s of a core) would stall every other
request of the process. The check runs in a subprocess, since monkey-patching cannot be undone
in the test process: a greenlet ticks every 10 ms while four sign-ups hash at once, and the
longest silence between its ticks must stay well below one hash's time."""

from __future__ import annotations

import json
import subprocess
import sys

from common.accounts import users
from common.platform.settings import PROJECT_ROOT

PROBE = r"""
from gevent import monkey
monkey.patch_all()

import json, time
import gevent
from common.accounts import users

users._hasher.hash("warm-up-password")
started = time.perf_counter()
users._hasher.hash("one-hash-password")
one_hash = time.perf_counter() - started

gaps = []
done = False

def tick():
    last = time.perf_counter()
    while not done:
        gevent.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now

ticker = gevent.spawn(tick)
gevent.sleep(0.05)
hashes = [gevent.spawn(users.hash_password, f"password-{i}-long") for i in range(4)]
gevent.joinall(hashes, raise_error=True)
done = True
ticker.join()
ok = all(users._hasher.verify(h.value, f"password-{i}-long") for i, h in enumerate(hashes))
print(json.dumps({"one_hash": one_hash, "longest_gap": max(gaps), "ticks": len(gaps), "ok": ok}))
"""


def test_hashing_under_gevent_does_not_block_the_event_loop():
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=PROJECT_ROOT, capture_output=True,
                           text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    figures = json.loads(probe.stdout.strip().splitlines()[-1])
    assert figures["ok"]
    # On the loop, the longest gap would be at least one whole hash (four, one after another).
    assert figures["longest_gap"] < figures["one_hash"] / 2, figures


def test_without_gevent_hashing_runs_in_the_caller():
    # A CLI or a Celery thread has no loop to keep free: the same functions just work.
    password_hash = users.hash_password("a-password-long")
    assert users._hasher.verify(password_hash, "a-password-long")
