"""`flashsale run`'s pieces without servers: the supervisor restarts a process that dies
(and only it), stops on a bad setting, and leaves nothing behind on SIGTERM; services.json
is created readable by its owner only."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from common.development.supervisor import FIRST_RESTART_DELAY, MAX_RESTART_DELAY, restart_delay
from common.platform.files import write_private
from common.platform.settings import PROJECT_ROOT


def test_restart_delay_doubles_while_a_process_dies_young_and_resets_once_it_ran():
    delays, delay = [], 0.0
    for _ in range(7):
        delay = restart_delay(delay, ran_seconds=1)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, MAX_RESTART_DELAY, MAX_RESTART_DELAY]
    assert restart_delay(MAX_RESTART_DELAY, ran_seconds=60) == FIRST_RESTART_DELAY


def _supervise(tmp_path: Path, processes: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "supervisor.log"
    script = textwrap.dedent(f"""
        import sys
        from common.development.supervisor import ProcfileSupervisor
        supervisor = ProcfileSupervisor(kill_wait=3)
        for name, command in {processes!r}.items():
            supervisor.add_process(name, command)
        sys.exit(supervisor.loop())
    """)
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def _wait_log(log: Path, pattern: str, timeout: float = 15) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in:\n{log.read_text()}")


def test_a_killed_process_is_restarted_with_what_it_left_behind_stopped(tmp_path):
    # `forks` leaves a child holding its output pipe when it dies, as a killed gunicorn master
    # leaves its workers; `steady` must not be touched by either death.
    process, log = _supervise(tmp_path, {
        "steady": "exec sleep 300", "forks": "sleep 300 & exec sleep 301"})
    root = psutil.Process(process.pid)
    try:
        steady = int(_wait_log(log, r"steady started \(pid=(\d+)\)")[1])
        forks = int(_wait_log(log, r"forks started \(pid=(\d+)\)")[1])
        left = next(p for p in root.children(recursive=True) if p.cmdline()[-1:] == ["300"]
                    and p.ppid() == forks)
        os.kill(forks, signal.SIGKILL)
        _wait_log(log, rf"system \| forks \(pid {forks}\) exited with status -9 \(SIGKILL\); "
                       rf"restarting in 0\.5s")
        _wait_log(log, rf"forks started \(pid=(?!{forks}\))\d+\)")
        assert psutil.wait_procs([left], timeout=5)[1] == [], "the dead process's child lives on"
        assert psutil.pid_exists(steady) and process.poll() is None
        descendants = root.children(recursive=True)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
    assert code == 143
    assert psutil.wait_procs(descendants, timeout=5)[1] == [], "left behind after SIGTERM"
    assert "SIGTERM received" in log.read_text()


def test_a_process_stopped_by_a_bad_setting_stops_the_run(tmp_path):
    # Exit status 78 is a bad setting (common.platform.settings): restarting cannot mend it.
    process, log = _supervise(tmp_path, {"steady": "exec sleep 300", "bad": "sleep 0.5; exit 78"})
    try:
        steady = psutil.Process(int(_wait_log(log, r"steady started \(pid=(\d+)\)")[1]))
        assert process.wait(15) == 78
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "bad exited with status 78 (a bad setting); stopping" in log.read_text()
    assert psutil.wait_procs([steady], timeout=5)[1] == []


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_services_file_is_created_readable_by_its_owner_only(tmp_path, umask):
    path = tmp_path / "services.json"
    old = os.umask(umask)
    try:
        write_private(path, '{"stripe_secret_key": "sk_test_x"}')
        write_private(path, '{"stripe_secret_key": "sk_test_y"}')  # replaced atomically
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == '{"stripe_secret_key": "sk_test_y"}'
    assert [p.name for p in tmp_path.iterdir()] == ["services.json"]


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_generated_secrets_are_never_readable_by_others(tmp_path, umask, monkeypatch):
    """The development JWT key and admin password are created 0600, never chmod-ed after
    (a file readable for a moment can be opened by another user and stays readable)."""
    from pathlib import Path

    from common.development.demo import dev_admin_password
    from common.platform.settings import load_settings

    def no_chmod(*_args, **_kwargs):
        raise AssertionError("created with a wider mode, then chmod-ed")

    monkeypatch.setattr(Path, "chmod", no_chmod)
    monkeypatch.setattr(os, "chmod", no_chmod)
    old = os.umask(umask)
    try:
        settings = load_settings(var_dir=tmp_path, jwt_secret_key=None)
        key = settings.jwt_secret()
        password = dev_admin_password(tmp_path)
    finally:
        os.umask(old)
    secrets_dir = tmp_path / "secrets"
    assert stat.S_IMODE((secrets_dir / "jwt_secret_key").stat().st_mode) == 0o600
    assert stat.S_IMODE((secrets_dir / "admin_password").stat().st_mode) == 0o600
    assert key == settings.jwt_secret() and password == dev_admin_password(tmp_path)
    assert sorted(p.name for p in secrets_dir.iterdir()) == ["admin_password", "jwt_secret_key"]
