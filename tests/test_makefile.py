"""The Makefile picks a working Python quietly, also where pyenv shims stand in for versions
that are not installed (a shim is found by `command -v` and then fails, loudly, when run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from common.platform.settings import PROJECT_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def test_python_detection_skips_a_failing_shim_silently(tmp_path: Path) -> None:
    shim = tmp_path / "python3.13"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    shown = subprocess.run(
        ["make", "--no-print-directory", "-C", str(PROJECT_ROOT),
         "--eval", "show-python: ; @echo $(PYTHON)", "show-python"],
        env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "pyenv" not in shown.stderr
    chosen = shown.stdout.strip()
    assert chosen and chosen != "python3.13"
    subprocess.run([chosen, "-c", "import sys; assert sys.version_info >= (3, 11)"],
                   env=env, check=True, timeout=30)
