"""Fixtures that start real servers once per session on free ports (Redis, the MongoDB wire
server, the Stripe emulator) and give each test a clean namespace: a fresh database name and
fresh ids. `system` starts the whole product with `flashsale run`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from common.beacon.drand import Chain
from common.development import embedded
from common.development.ports import free_port, wait_for_port
from common.platform.clients import Clients
from common.platform.settings import PROJECT_ROOT, Settings, load_settings
from loadtests.system import stop_system

SERVICE_ENV = (
    "REDIS_URL", "MONGODB_URI", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "STRIPE_JS_URL", "STRIPE_EMULATOR",
    "CELERY_BROKER_URL", "PORT", "VAR_DIR", "APP_ENV", "FLASK_ENV", "JWT_SECRET_KEY",
    "PUBLIC_URL", "MONGODB_SERIALIZE_TRANSACTIONS", "REDIS_CLUSTER_NODES", "SMTP_URL", "DEV_MAILBOX",
    "DRAND_URLS", "DRAND_CHAIN_HASH", "DRAND_PUBLIC_KEY", "DRAND_PERIOD_SECONDS", "DRAND_GENESIS_TIME",
    "DRAND_TIMEOUT_SECONDS",
)


def clean_environ() -> dict[str, str]:
    """The machine's environment without any of our service settings."""
    return {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen
    argv: list[str]
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def start(self) -> None:
        # The child keeps its own copy of the descriptor; ours is closed at once (left to the
        # garbage collector, it surfaced as a ResourceWarning in whichever test ran then).
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)


def _start(name: str, url: str, argv: list[str], port: int, logs: Path) -> Server:
    server = Server(name, url, None, argv, logs / f"{name}.log")  # type: ignore[arg-type]
    server.start()
    if not wait_for_port("127.0.0.1", port, timeout=30):
        server.stop()
        raise RuntimeError(f"{name} did not start: see {server.log_path}")
    return server


@dataclass
class Servers:
    redis: Server
    mongodb: Server
    stripe: Server
    smtp: Server
    webhook_secret: str
    root: Path

    @property
    def mail_dir(self) -> Path:
        """Where the SMTP sink keeps what it receives (tests read the real messages here)."""
        return self.root / "mail"


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("servers")
    logs = root / "logs"
    logs.mkdir()
    from common.development.smtp_sink import smtp_command

    redis_port, mongo_port, stripe_port, smtp_port = free_port(), free_port(), free_port(), free_port()
    smtp_url = f"smtp://127.0.0.1:{smtp_port}"
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    mongo_uri = f"mongodb://127.0.0.1:{mongo_port}/"
    stripe_base = f"http://127.0.0.1:{stripe_port}"
    started: list[Server] = []
    try:
        started.append(_start("redis", redis_url,
                              embedded.redis_command(redis_url, root / "redis"), redis_port, logs))
        started.append(_start("mongodb", mongo_uri,
                              embedded.mongodb_command(mongo_uri, root / "mongodb", root / "run"),
                              mongo_port, logs))
        started.append(_start("stripe", stripe_base, embedded.stripe_command(stripe_base),
                              stripe_port, logs))
        started.append(_start("smtp", smtp_url, smtp_command(smtp_url, root / "mail"), smtp_port, logs))
        yield Servers(*started, webhook_secret="whsec_test_" + uuid.uuid4().hex, root=root)
    finally:
        for server in reversed(started):
            server.stop()


@dataclass
class RunningBeacon:
    """The embedded drand beacon of the session: its relay URL and its pinned chain."""

    url: str
    chain: Chain
    server: Server


@pytest.fixture(scope="session")
def beacon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBeacon]:
    """The embedded drand beacon (common/development/drand_beacon.py) as its own process, with
    1 s rounds so that a test waits little for a round."""
    from common.development.drand_beacon import beacon_command, ensure_beacon_key

    root = tmp_path_factory.mktemp("drand")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    chain = ensure_beacon_key(root / "state", period_seconds=1)  # the key the process will read
    server = _start("drand", url, beacon_command(url, root / "state", period_seconds=1), port, root)
    try:
        yield RunningBeacon(url=url, chain=chain, server=server)
    finally:
        server.stop()


@pytest.fixture
def settings(servers: Servers, tmp_path: Path) -> Settings:
    """Settings for one test: the session's servers, a fresh MongoDB database."""
    return load_settings(
        app_env="test",
        redis_url=servers.redis.url,
        mongodb_uri=servers.mongodb.url + f"t_{uuid.uuid4().hex[:12]}",
        stripe_secret_key=embedded.EMBEDDED_STRIPE_SECRET_KEY,
        stripe_publishable_key=embedded.EMBEDDED_STRIPE_PUBLISHABLE_KEY,
        stripe_webhook_secret=servers.webhook_secret,
        stripe_api_base=servers.stripe.url,
        stripe_emulator=True,
        smtp_url=servers.smtp.url,
        mongodb_serialize_transactions=True,
        jwt_secret_key="test-secret-" + "x" * 32,
        var_dir=tmp_path / "var",
        log_format="text",
        login_rate_limit="1000 per minute",
        register_rate_limit="1000 per minute",
        register_total_rate_limit="1000 per second",
        admission_rate_limit="1000 per second",
        payment_rate_limit="1000 per minute",
    )


@pytest.fixture
def beacon_settings(settings: Settings, beacon: RunningBeacon) -> Settings:
    """`settings` with the session's embedded beacon configured (DRAND_*): new sales with a
    lobby draw with hmac-sha256-drand-v2. The plain `settings` have no beacon."""
    return settings.model_copy(update={
        "drand_urls": [beacon.url],
        "drand_chain_hash": beacon.chain.chain_hash,
        "drand_public_key": beacon.chain.public_key,
        "drand_period_seconds": beacon.chain.period_seconds,
        "drand_genesis_time": beacon.chain.genesis_time,
    })


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a subprocess (worker, beat, API) that should use these settings."""
    env = clean_environ()
    for name in ("redis_url", "mongodb_uri", "stripe_secret_key", "stripe_publishable_key",
                 "stripe_webhook_secret", "stripe_api_base", "jwt_secret_key", "var_dir", "smtp_url"):
        env[name.upper()] = str(getattr(settings, name))
    if settings.redis_cluster_nodes:
        env["REDIS_CLUSTER_NODES"] = settings.redis_cluster_nodes
    if settings.drand_urls:
        env.update({"DRAND_URLS": ",".join(settings.drand_urls),
                    "DRAND_CHAIN_HASH": settings.drand_chain_hash,
                    "DRAND_PUBLIC_KEY": settings.drand_public_key,
                    "DRAND_PERIOD_SECONDS": str(settings.drand_period_seconds),
                    "DRAND_GENESIS_TIME": str(settings.drand_genesis_time),
                    "DRAND_TIMEOUT_SECONDS": str(settings.drand_timeout_seconds)})
    env.update({"STRIPE_EMULATOR": "true", "MONGODB_SERIALIZE_TRANSACTIONS": "true",
                "APP_ENV": "test", "LOG_FORMAT": "json"})
    env.update(extra)
    return env


@pytest.fixture
def clients(settings: Settings) -> Iterator[Clients]:
    made = Clients(settings)
    yield made
    with contextlib.suppress(Exception):
        made.mongo.drop_database(made.db.name)
    made.close()


@pytest.fixture
def make_clients() -> Iterator[Callable[[Settings], Clients]]:
    """Clients for settings of the test's own (a tighter limit, a server that is down), closed
    when the test ends: left to the garbage collector, their MongoClients and sockets raised
    ResourceWarnings in whichever test ran then."""
    made: list[Clients] = []

    def make(settings: Settings) -> Clients:
        made.append(Clients(settings))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture
def app(settings: Settings, clients: Clients):
    from api.app import create_app

    application = create_app(settings, clients)
    application.testing = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()


# ------------------------------------------------------------------ the whole system


@dataclass
class RunningSystem:
    url: str
    services: dict
    process: subprocess.Popen
    var_dir: Path
    log_path: Path

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)


def start_system(root: Path, extra_env: dict[str, str] | None = None,
                 timeout: float = 120, args: tuple[str, ...] = (),
                 drop_env: tuple[str, ...] = ()) -> RunningSystem:
    """`flashsale run` in a subprocess with its own var dir; waits for services.json."""
    var_dir = root / "var"
    port = free_port()
    env = clean_environ()
    env.update({"PORT": str(port), "VAR_DIR": str(var_dir), "LOG_FORMAT": "json",
                "EXPIRY_INTERVAL_SECONDS": "1", "CLAIM_IDLE_MS": "3000",
                "ADMISSION_RATE_LIMIT": "100000 per second", "LOGIN_RATE_LIMIT": "100000 per minute",
                "REGISTER_RATE_LIMIT": "100000 per minute",
                "REGISTER_TOTAL_RATE_LIMIT": "100000 per second",
                "PAYMENT_RATE_LIMIT": "100000 per minute",
                # The load tests' shoppers all stream from this one address.
                "STREAM_MAX_PER_ADDRESS": "0",
                "ADMIN_EMAIL": "admin@example.com", "ADMIN_PASSWORD": "admin-password-123"})
    env.update(extra_env or {})
    for name in drop_env:
        env.pop(name, None)
    log_path = root / "system.log"
    # The child keeps its own descriptor; ours is closed at once (left to the garbage collector
    # it surfaced as a ResourceWarning, an error, in whichever test ran then).
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "flashsale"), "run", *args], cwd=PROJECT_ROOT,
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    services_path = var_dir / "run" / "services.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if services_path.exists():
            services = json.loads(services_path.read_text())
            return RunningSystem(services["api"], services, process, var_dir, log_path)
        if process.poll() is not None:
            break
        time.sleep(0.3)
    stop_system(process)
    raise RuntimeError("flashsale run did not become ready:\n" + log_path.read_text()[-4000:])


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    running = start_system(tmp_path_factory.mktemp("system"))
    yield running
    stop_system(running.process)
