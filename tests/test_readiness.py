"""`/readyz` while Stripe is down: every call still reports it, but Stripe is asked at most
once per cache window however many probes arrive, one after another or at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import stripe

from api import ops
from api.app import create_app
from common.platform.clients import Clients
from tests.faults.proxy import FaultProxy, Mode
from tests.faults.services import wait_until


class CountingStripe:
    """Stands in for the app's Stripe client: counts the calls that reach it; Stripe is down."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self.v1 = SimpleNamespace(payment_intents=SimpleNamespace(list=self._list))

    def _list(self, **_kwargs: Any) -> None:
        with self._lock:
            self.calls += 1
        time.sleep(0.2)  # a slow failure: probes arriving meanwhile must wait for this one
        raise stripe.APIConnectionError("Stripe is unreachable")


def _readyz(app) -> tuple[int, dict]:
    answer = app.test_client().get("/readyz")
    return answer.status_code, answer.get_json()


def test_rapid_readiness_probes_ask_a_down_stripe_once_per_window(app, clients, monkeypatch):
    counting = clients.__dict__["stripe"] = CountingStripe()
    # A window longer than the probes take on a loaded machine (40 probes once took over 2 s).
    monkeypatch.setattr(ops, "READINESS_CACHE_SECONDS", 30.0)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _readyz(app), range(40)))
    assert {status for status, _ in answers} == {503}
    assert all(body["down"] == ["stripe"] for _, body in answers), answers[0]
    assert answers[0][1]["checks"]["stripe"] == {"ok": False, "error": "APIConnectionError"}
    assert counting.calls == 1
    monkeypatch.setattr(ops, "READINESS_CACHE_SECONDS", 0.2)
    time.sleep(0.3)  # the window is over: the next probe asks Stripe again...
    assert _readyz(app)[0] == 503
    monkeypatch.setattr(ops, "READINESS_CACHE_SECONDS", 30.0)  # ...and the ones after it do not
    for _ in range(20):
        assert _readyz(app)[0] == 503
    assert counting.calls == 2


def test_readyz_reports_an_unreachable_stripe_server_and_its_return(settings, servers):
    with FaultProxy("127.0.0.1", int(servers.stripe.url.rsplit(":", 1)[1]), mode=Mode.DROP) as proxy:
        proxied = settings.model_copy(update={"stripe_api_base": proxy.url("http")})
        clients = Clients(proxied)
        try:
            app = create_app(proxied, clients)
            for _ in range(15):
                status, body = _readyz(app)
                assert status == 503 and body["down"] == ["stripe"], body
            # One probe: its first try and the Stripe client's two retries.
            assert 1 <= proxy.accepted <= 3, proxy.accepted
            proxy.set(Mode.PASS)
            wait_until(lambda: _readyz(app)[0] == 200, 15, interval=0.2,
                       message="/readyz to see Stripe back")
        finally:
            clients.close()
