from __future__ import annotations

import subprocess
import sys

import pytest

from common.platform.settings import EXIT_BAD_SETTINGS, SettingsError, load_settings
from tests.conftest import clean_environ


def test_bad_url_is_reported_by_name():
    with pytest.raises(SettingsError) as err:
        load_settings(redis_url="http://nope")
    assert "REDIS_URL" in str(err.value)


def test_production_requires_explicit_secrets():
    with pytest.raises(SettingsError) as err:
        load_settings(app_env="production")
    message = str(err.value)
    for name in ("JWT_SECRET_KEY", "REDIS_URL", "MONGODB_URI", "STRIPE_SECRET_KEY"):
        assert name in message


def test_development_generates_one_jwt_secret_into_var(tmp_path):
    first = load_settings(var_dir=tmp_path).jwt_secret()
    second = load_settings(var_dir=tmp_path).jwt_secret()
    assert first == second and len(first) == 64
    assert (tmp_path / "secrets" / "jwt_secret_key").stat().st_mode & 0o077 == 0


def test_cli_exits_with_clear_message_on_bad_setting():
    env = clean_environ() | {"PORT": "not-a-port"}
    result = subprocess.run([sys.executable, "-m", "common.cli", "serve", "api"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_BAD_SETTINGS
    assert "PORT" in result.stderr and "Traceback" not in result.stderr
