"""Settings validation (common/platform/settings.py) without starting anything: each bad value
is refused by name with a readable reason, and production insists on explicit secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.platform.settings import SettingsError, load_settings

SECRETS = ("JWT_SECRET_KEY", "REDIS_URL", "MONGODB_URI", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET",
           "APP_ENV", "FLASK_ENV")


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


@pytest.mark.parametrize(("field", "value", "named"), [
    ("redis_url", "http://localhost:6379", "REDIS_URL"),
    ("celery_broker_url", "amqp://localhost", "CELERY_BROKER_URL"),
    ("mongodb_uri", "postgres://localhost", "MONGODB_URI"),
    ("admission_rate_limit", "fast", "ADMISSION_RATE_LIMIT"),
    ("login_rate_limit", "10 per fortnight", "LOGIN_RATE_LIMIT"),
    ("payment_rate_limit", "", "PAYMENT_RATE_LIMIT"),
    ("port", 0, "PORT"),
    ("web_concurrency", 65, "WEB_CONCURRENCY"),
])
def test_a_bad_value_is_refused_by_name(field: str, value: object, named: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(**{field: value})
    assert named in str(refused.value)


def test_good_values_are_taken() -> None:
    settings = load_settings(redis_url="rediss://cache:6380/0", mongodb_uri="mongodb+srv://db/x",
                             admission_rate_limit="50/second", port=9000)
    assert settings.broker_url == "rediss://cache:6380/0"
    assert settings.port == 9000 and not settings.is_production


def test_production_lists_every_missing_secret_at_once() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(app_env="production")
    for name in ("JWT_SECRET_KEY", "REDIS_URL", "MONGODB_URI", "STRIPE_SECRET_KEY",
                 "STRIPE_WEBHOOK_SECRET"):
        assert name in str(refused.value)


def test_production_refuses_a_short_jwt_secret() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(app_env="production", jwt_secret_key="short", redis_url="redis://r",
                      mongodb_uri="mongodb://m", stripe_secret_key="sk", stripe_webhook_secret="wh")
    assert "JWT_SECRET_KEY" in str(refused.value)


def test_a_missing_required_service_is_named_when_it_is_needed() -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        load_settings().require("redis_url")
