"""gunicorn's settings file for the API: every name in it is a gunicorn setting with the value
`flashsale serve api` has always used, host, port and workers come from the settings object,
and the file at the project root is the one in the package."""

from __future__ import annotations

import gc
import runpy
from pathlib import Path

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi

from api.single_write import SingleWriteResponse
from common.cli import gunicorn_config
from common.platform.settings import PROJECT_ROOT, get_settings


@pytest.fixture
def conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, object]:
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        names = runpy.run_path(gunicorn_config())
    finally:
        get_settings.cache_clear()
    return {name: value for name, value in names.items() if not name.startswith("_")
            and name != "settings_or_exit"}


def test_the_api_runs_on_gevent_with_the_settings_values(conf: dict[str, object]) -> None:
    assert conf == {
        "worker_class": "gevent", "workers": 3, "worker_connections": 10_000,
        "backlog": 8192,
        "bind": "0.0.0.0:8123", "graceful_timeout": 10, "timeout": 30, "keepalive": 75,
        "accesslog": "-",
        "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s',
        "logger_class": "api.access_log.AccessLog",
        "post_worker_init": conf["post_worker_init"], "post_request": conf["post_request"],
    }


def test_gunicorn_accepts_every_name_and_value(conf: dict[str, object]) -> None:
    config = Config()
    for name, value in conf.items():
        config.set(name, value)  # an unknown name is a KeyError, a bad value a ValueError
    assert config.worker_class_str == "gevent" and config.address == [("0.0.0.0", 8123)]


def test_the_root_file_is_the_packaged_one() -> None:
    packaged = Path(gunicorn_config())
    assert packaged.parent.name == "api" and packaged.is_file()
    assert (PROJECT_ROOT / "gunicorn.conf.py").resolve() == packaged.resolve()


def test_a_worker_freezes_what_it_loaded_out_of_the_collectors_sight(
        conf: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsgi, "Response", wsgi.Response)  # the worker's swap, undone after
    try:
        conf["post_worker_init"](object())  # type: ignore[operator]
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
    assert wsgi.Response is SingleWriteResponse
