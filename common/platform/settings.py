"""The one place that reads configuration from the environment (and `.env`).

Everything else receives a `Settings` object. Validation happens once, at start-up, so a
bad value stops the process with a readable message instead of failing on first use.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import limits
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.platform.files import create_private

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Exit status for a configuration error (EX_CONFIG from sysexits.h).
EXIT_BAD_SETTINGS = 78


class SettingsError(Exception):
    """A setting is missing or invalid; the message says which and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    app_env: Literal["development", "test", "production"] = "development"
    flask_env: str | None = None

    # Where the API listens (gunicorn) and where generated files go.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # A listening socket the API inherits instead of binding HOST:PORT: `flashsale run` keeps
    # one open across restarts of gunicorn's master, so a restart refuses no connection.
    listen_fd: int | None = Field(None, ge=0)
    var_dir: Path = PROJECT_ROOT / "var"
    web_concurrency: int = Field(2, ge=1, le=64)
    public_url: str | None = None

    # Backing services. Unset means "start an embedded server" in `flashsale run`;
    # the API and workers themselves always need them set.
    redis_url: str | None = None
    # Per process. Past it a request waits up to the timeout for a free connection instead of
    # failing at once: a surge queues for a moment rather than answering 503.
    redis_max_connections: int = Field(200, ge=2, le=10_000)
    redis_pool_timeout_seconds: float = Field(10.0, gt=0, le=120)
    celery_broker_url: str | None = None
    # `host:port,host:port,...`: the waiting room and sale data (every `{sale:<id>}` key, the
    # sales index) live on this Redis Cluster; the broker, rate limits and the token denylist
    # stay on REDIS_URL. Unset: sale data on REDIS_URL too.
    redis_cluster_nodes: str | None = None
    mongodb_uri: str | None = None
    mongodb_db: str = "flashsale"
    # Run transactions one at a time: needed by the embedded server only (common/platform/mongo_tx.py).
    mongodb_serialize_transactions: bool = False
    stripe_secret_key: str | None = None
    stripe_publishable_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    # Where the browser loads Stripe.js from: Stripe in production, the emulator in development.
    stripe_js_url: str = "https://js.stripe.com/v3/"
    stripe_timeout_seconds: float = Field(10.0, gt=0, le=120)
    # The emulator lacks a few parameters real Stripe takes (cancellation_reason).
    stripe_emulator: bool = False
    # Outgoing mail: smtp://[user:password@]host:port (smtps:// for TLS from the start). Unset
    # in development means `flashsale run`'s embedded sink (var/mail/).
    smtp_url: str | None = None
    mail_from: str = "Flash Sale <no-reply@flashsale.localhost>"
    # Development only (refused in production): GET /api/dev/mailbox lists the embedded sink's
    # messages, so a newcomer can verify an account without a real inbox.
    dev_mailbox: bool = False

    # Authentication.
    jwt_secret_key: str | None = None
    jwt_access_ttl_seconds: int = Field(15 * 60, ge=10, le=24 * 3600)
    jwt_refresh_ttl_seconds: int = Field(30 * 24 * 3600, ge=60, le=365 * 24 * 3600)
    admin_email: str | None = None
    admin_password: str | None = None
    login_rate_limit: str = "10 per minute"
    # Each sign-up costs an argon2 hash (~0.2 s of a core): limited per client address, and in
    # total so that a flood from many addresses cannot take the CPU the admissions need.
    register_rate_limit: str = "5 per minute"
    register_total_rate_limit: str = "5 per second"
    # argon2id cost of each password hash and check. Default: OWASP's password-storage minimum
    # (19 MiB, 2 passes, 1 lane; about 20-40 ms of a core here, against 150-290 ms for
    # argon2-cffi's own default of 64 MiB, 3 passes, 4 lanes). A stored hash made with other
    # values is rehashed on its owner's next sign-in. Production refuses less than OWASP's
    # weakest listed option (memory x passes below 7 MiB x 5).
    password_hash_memory_kib: int = Field(19 * 1024, ge=1024, le=4 * 1024 * 1024)
    password_hash_time_cost: int = Field(2, ge=1, le=20)
    password_hash_parallelism: int = Field(1, ge=1, le=16)
    # Verification mail (`POST /api/auth/verify-email/request`): per client address like
    # register, and per account, so one account cannot mail an inbox over and over.
    verify_email_rate_limit: str = "5 per minute"
    verify_email_account_rate_limit: str = "3 per 10 minutes"
    # Mail domains whose local part ignores dots / `+tags`: such aliases of an address are one
    # account (common/accounts/email_identity.py).
    email_dot_insensitive_domains: list[str] = ["gmail.com", "googlemail.com"]
    email_plus_tag_domains: list[str] = [
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "icloud.com",
        "me.com", "fastmail.com", "protonmail.com", "proton.me", "yahoo.com"]
    admission_rate_limit: str = "20 per second"
    # Per signed-in shopper, shared by the pay endpoints and checkout: each attempt costs Stripe
    # calls on the shop's one account, whose rate limit every shopper shares.
    payment_rate_limit: str = "10 per minute"

    # HTTP edge.
    max_content_length: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Proxies in front of the API that append to X-Forwarded-For (a TLS terminator, a load
    # balancer): the client address (rate limits, logs) is read that many hops back. 0 trusts
    # no header: anyone could write one.
    trusted_proxy_count: int = Field(0, ge=0, le=10)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # The fraction of requests that get an access log line (api/access_log.py); `flashsale run`
    # lowers it in development, where each line also crosses the supervisor.
    access_log_sample_rate: float = Field(1.0, ge=0, le=1)
    log_format: Literal["json", "text"] = "json"
    # A ticket's stream_token (for EventSource) opens its event stream for this long at most;
    # every ticket answer carries a fresh one, so a token read from a log soon opens nothing.
    stream_token_ttl_seconds: int = Field(3600, ge=60, le=3600)
    # Event streams open at once, counted across every API process: per ticket, and per client
    # address (as the rate limits see it: TRUSTED_PROXY_COUNT). Beyond: 429 too_many_streams.
    # 0: no cap (a load test from one machine).
    stream_max_per_ticket: int = Field(3, ge=0, le=1000)
    stream_max_per_address: int = Field(20, ge=0, le=1_000_000)
    # Proof-of-work at a sale's door (entry.challenge, common/flash_sale/entry_challenge.py):
    # ALTCHA's HMAC key (unset: derived from the JWT key), the challenge's range of numbers (a
    # browser tries half of them on average: 50 000 SHA-256 hashes, about 0.1-0.5 s), and how
    # long a challenge stays valid (a shopper solves it while reading the page or in the lobby).
    altcha_hmac_key: str | None = None
    altcha_max_number: int = Field(50_000, ge=1_000, le=10_000_000)
    altcha_challenge_ttl_seconds: int = Field(1800, ge=60, le=24 * 3600)

    # Waiting room.
    decision_batch_size: int = Field(500, ge=1, le=10_000)
    claim_idle_ms: int = Field(15_000, ge=100)
    max_deliveries: int = Field(5, ge=1, le=100)
    drain_idle_seconds: float = Field(2.0, ge=0, le=60)
    payment_intent_concurrency: int = Field(16, ge=1, le=256)
    expiry_interval_seconds: float = Field(5.0, gt=0, le=3600)
    reconcile_interval_seconds: float = Field(60.0, gt=0, le=86400)
    # A draw sale's walk (billing/draw_walk.py) makes at most this many Stripe calls a second,
    # evenly spaced: Stripe's test mode allows 25 writes a second, live mode 100.
    draw_stripe_calls_per_second: float = Field(25.0, gt=0, le=1000)

    # Public randomness for a sale's draw order (fairness v2, common/beacon/drand.py): the
    # drand HTTP relays to ask, in order (`https://api.drand.sh,https://drand.cloudflare.com`).
    # Empty: sales draw with their own committed seed only (hmac-sha256-v1). Unset in
    # development, `flashsale run` starts an embedded beacon and fills in every DRAND_* below.
    drand_urls: Annotated[list[str], NoDecode] = []
    # The pinned chain every relay's answer is verified against (League of Entropy quicknet).
    drand_chain_hash: str = "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971"
    # The chain's BLS public key: 96 bytes of hex, a compressed G2 point.
    drand_public_key: str = (
        "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a577"
        "6a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc0"
        "9e76eae8991ef5ece45a")
    # Seconds between the chain's rounds.
    drand_period_seconds: int = Field(3, ge=1, le=3600)
    # Unix time of the chain's round 1: with the period, when each round is due.
    drand_genesis_time: int = Field(1692803367, ge=0)
    # One relay's answer is waited for this long before the next relay is asked.
    drand_timeout_seconds: float = Field(3.0, gt=0, le=60)

    # How soon a task held by a dead worker goes to another; live workers renew their tasks'
    # lease every third of it, however long a task runs (worker/unacked_lease.py).
    celery_visibility_timeout_seconds: int = Field(30, ge=3, le=3600)
    task_max_retries: int = Field(8, ge=0, le=100)

    # Pacing by Stripe's health (flash_sale/health_pacing.py).
    # Off: only the operator paces a sale.
    stripe_health_pacing: bool = True
    # The sliding window over which Stripe's PaymentIntent calls are counted.
    stripe_health_window_seconds: int = Field(30, ge=3, le=600)
    # Fewer calls than this in the window never lower a pace.
    stripe_health_min_calls: int = Field(10, ge=1, le=100_000)
    # More errors than this share of the window's calls lowers the pace.
    stripe_health_max_error_rate: float = Field(0.05, gt=0, le=1)
    # A call that takes this long counts as slow.
    stripe_health_slow_call_ms: int = Field(2_000, ge=10, le=120_000)
    # More slow calls than this share of the window's calls lowers the pace.
    stripe_health_max_slow_rate: float = Field(0.02, gt=0, le=1)
    # At most one change of a sale's automatic pace (halved down, doubled back) this often.
    stripe_health_step_seconds: float = Field(5.0, gt=0, le=600)

    # Set for gunicorn so that every worker process reports into one set of metrics.
    prometheus_multiproc_dir: Path | None = None

    frontend_dist: Path = PROJECT_ROOT / "frontend" / "dist"

    @field_validator("redis_url", "celery_broker_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_cluster_nodes")
    @classmethod
    def _cluster_nodes(cls, value: str | None) -> str | None:
        if not value:
            return None
        for node in value.split(","):
            host, _, port = node.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("must read like host:port,host:port,...")
        return value

    @property
    def cluster_nodes(self) -> list[tuple[str, int]]:
        """REDIS_CLUSTER_NODES as (host, port) pairs; empty when sale data is on REDIS_URL."""
        pairs = [node.strip().rpartition(":") for node in (self.redis_cluster_nodes or "").split(",")]
        return [(host, int(port)) for host, _, port in pairs if host]

    @field_validator("drand_urls", mode="before")
    @classmethod
    def _drand_urls(cls, value: object) -> object:
        # From the environment: a comma-separated list (a JSON list works too).
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [url.strip() for url in text.split(",") if url.strip()]
        return value

    @field_validator("drand_urls")
    @classmethod
    def _drand_url_scheme(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} must start with http:// or https://")
        return [url.rstrip("/") for url in value]

    @field_validator("drand_chain_hash", "drand_public_key")
    @classmethod
    def _drand_hex(cls, value: str, info: ValidationInfo) -> str:
        length = 32 if info.field_name == "drand_chain_hash" else 96
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) != length:
            raise ValueError(f"must be {length} bytes of hex")
        return value.lower()

    @field_validator("login_rate_limit", "admission_rate_limit", "register_rate_limit",
                     "register_total_rate_limit", "payment_rate_limit", "verify_email_rate_limit",
                     "verify_email_account_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError:
            raise ValueError('must read like "20 per second" or "10/minute"') from None
        return value

    @field_validator("mongodb_uri")
    @classmethod
    def _mongo_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value

    @model_validator(mode="after")
    def _production_needs_explicit_secrets(self) -> Settings:
        if self.is_production:
            missing = [
                name
                for name in ("jwt_secret_key", "redis_url", "mongodb_uri",
                             "stripe_secret_key", "stripe_webhook_secret")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(
                    "production needs these set explicitly: "
                    + ", ".join(n.upper() for n in missing)
                )
            if self.jwt_secret_key and len(self.jwt_secret_key) < 32:
                raise ValueError("JWT_SECRET_KEY must be at least 32 characters in production")
            if self.dev_mailbox:
                raise ValueError("DEV_MAILBOX shows every outgoing mail: never in production")
            if self.password_hash_memory_kib * self.password_hash_time_cost < 7 * 1024 * 5:
                raise ValueError("PASSWORD_HASH_MEMORY_KIB x PASSWORD_HASH_TIME_COST is below "
                                 "OWASP's argon2id minimum (7168 KiB x 5) in production")
        return self

    @property
    def is_production(self) -> bool:
        return self.app_env == "production" or self.flask_env == "production"

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.require("redis_url")

    def require(self, name: str) -> str:
        value = getattr(self, name)
        if not value:
            raise SettingsError(f"{name.upper()} is not set")
        return str(value)

    def jwt_secret(self) -> str:
        """The JWT signing key: explicit, or generated once into var/ for development."""
        if self.jwt_secret_key:
            return self.jwt_secret_key
        path = self.var_dir / "secrets" / "jwt_secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            candidate = path.with_name(f".jwt_secret_key.{secrets.token_hex(4)}")
            create_private(candidate, secrets.token_hex(32))
            try:
                # link() never overwrites: when processes race, the first secret wins.
                os.link(candidate, path)
            except FileExistsError:
                pass
            finally:
                candidate.unlink()
        return path.read_text().strip()


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings, raising SettingsError with every problem listed."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part).upper() for part in error["loc"]) or "settings"
            problems.append(f"  {where}: {error['msg']}")
        raise SettingsError("invalid settings:\n" + "\n".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def settings_or_exit() -> Settings:
    """For process entry points: a bad setting prints one clear message and exits 78."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"flashsale: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTINGS) from None
