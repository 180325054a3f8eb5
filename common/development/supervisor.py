"""Keeps the Procfile's processes running under `flashsale run`.

honcho's Manager stops every process as soon as one exits (by design: honcho issue #175; a
respawn option was declined, pull request #195), so one Celery worker killed by the OOM killer
took Redis, MongoDB, Stripe and the API down with it. Supervisor-style tools (supervisord,
circus) would replace honcho with a daemon, a generated config and a message bus; this is the
one piece honcho lacks: each Procfile line runs in its own process group with honcho's output
format, a process that dies is restarted after a backoff (one log line names it, its exit
status and the delay), and SIGINT/SIGTERM stop them all, with SIGKILL after honcho's wait.
"""

from __future__ import annotations

import datetime
import errno
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from honcho.colour import get_colours
from honcho.manager import KILL_WAIT
from honcho.printer import Message, Printer
from honcho.process import Popen

from common.platform.settings import EXIT_BAD_SETTINGS

SYSTEM = "system"
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 10.0
# A process that ran this long before dying is not crash-looping: restart it quickly again.
STEADY_SECONDS = 10.0
STOP_SIGNALS: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}  # honcho's exit statuses


def restart_delay(previous: float, ran_seconds: float) -> float:
    """Seconds to wait before restarting a process that died after `ran_seconds`: doubling
    from FIRST_RESTART_DELAY up to MAX_RESTART_DELAY while it keeps dying young."""
    if ran_seconds > STEADY_SECONDS or previous <= 0:
        return FIRST_RESTART_DELAY
    return min(previous * 2, MAX_RESTART_DELAY)


def describe_exit(code: int) -> str:
    """`status -9 (SIGKILL)`: an exit status as Popen reports it, with the name of the signal
    that ended the process; 128 + N is the shell's way of saying that signal N ended its child."""
    number = -code if code < 0 else code - 128 if 128 < code < 160 else 0
    try:
        return f"status {code} ({signal.Signals(number).name})"
    except ValueError:
        return f"status {code}"


def signal_group(pgid: int, sig: int) -> None:
    """Signal a whole process group (a child and what it forked); gone is fine."""
    try:
        os.killpg(pgid, sig)
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise


@dataclass
class _Slot:
    name: str
    command: str
    env: dict[str, str] | None
    cwd: str | None
    colour: str
    pass_fds: tuple[int, ...] = ()
    child: Popen | None = None
    started_at: float = 0.0
    delay: float = 0.0
    restart_at: float | None = None


class ProcfileSupervisor:
    """Runs named shell commands, restarts any that dies, stops them all on SIGINT/SIGTERM."""

    def __init__(self, output: IO[str] | None = None, kill_wait: float = KILL_WAIT) -> None:
        self._printer = Printer(output or sys.stdout, width=len(SYSTEM))
        self._colours = get_colours()
        self._slots: dict[str, _Slot] = {}
        self._lines: queue.Queue[Message] = queue.Queue()
        self._kill_wait = kill_wait
        self._stopping_since: float | None = None
        self._killed = False
        self.returncode: int | None = None

    def add_process(self, name: str, command: str, env: dict[str, str] | None = None,
                    cwd: str | None = None, pass_fds: tuple[int, ...] = ()) -> None:
        """`pass_fds`: descriptors each run of the command inherits (a listening socket this
        process keeps open across the command's restarts)."""
        self._slots[name] = _Slot(name, command, env, cwd, next(self._colours), pass_fds)
        self._printer.width = max(self._printer.width, len(name))

    def stop(self, returncode: int = 0) -> None:
        """Stop every process: SIGTERM to each process group now, SIGKILL after kill_wait."""
        if self._stopping_since is not None:
            return
        self._stopping_since = time.monotonic()
        self.returncode = returncode
        for slot in self._slots.values():
            slot.restart_at = None
            if slot.child is not None:
                signal_group(slot.child.pid, signal.SIGTERM)

    def loop(self) -> int:
        """Start every process and keep them running until stop() or SIGINT/SIGTERM; returns
        the exit status for `flashsale run` (130 after SIGINT, 143 after SIGTERM)."""

        received: list[int] = []  # acted on by the loop: printing in a handler can reenter print

        def on_signal(signum: int, _frame: Any) -> None:
            received.append(signum)

        for signum in STOP_SIGNALS:
            signal.signal(signum, on_signal)
        for slot in self._slots.values():
            self._start(slot)
        try:
            while any(s.restart_at is not None or self._running(s) for s in self._slots.values()):
                self._print_lines(timeout=0.1)
                if received and self._stopping_since is None:
                    self._say(f"{signal.Signals(received[0]).name} received")
                    self.stop(STOP_SIGNALS[received[0]])
                now = time.monotonic()
                for slot in self._slots.values():
                    if slot.child is not None and slot.child.returncode is None \
                            and slot.child.poll() is not None:
                        self._exited(slot, now)
                    if slot.restart_at is not None and now >= slot.restart_at:
                        self._start(slot)
                if self._stopping_since is not None and not self._killed \
                        and now - self._stopping_since > self._kill_wait:
                    self._killed = True
                    for slot in self._slots.values():
                        if self._running(slot):
                            self._say(f"sending SIGKILL to {slot.name} (pid {slot.child.pid})")  # type: ignore[union-attr]
                            signal_group(slot.child.pid, signal.SIGKILL)  # type: ignore[union-attr]
        finally:
            # Whatever a process left in its group (a killed gunicorn master's workers) goes too.
            for slot in self._slots.values():
                if slot.child is not None:
                    signal_group(slot.child.pid, signal.SIGKILL)
            self._print_lines(timeout=0)
        return self.returncode or 0

    # ----------------------------------------------------------------------- internals

    @staticmethod
    def _running(slot: _Slot) -> bool:
        return slot.child is not None and slot.child.returncode is None

    def _start(self, slot: _Slot) -> None:
        slot.restart_at = None
        if slot.child is not None:
            # Left over from the run that died (it had its delay to go on SIGTERM).
            signal_group(slot.child.pid, signal.SIGKILL)
        slot.child = Popen(slot.command, env=slot.env, cwd=slot.cwd, pass_fds=slot.pass_fds)
        slot.started_at = time.monotonic()
        self._say(f"{slot.name} started (pid={slot.child.pid})")
        # Output is read until every holder of the pipe is gone; exits are seen by poll().
        threading.Thread(target=self._pump, args=(slot, slot.child), daemon=True,
                         name=f"output-{slot.name}").start()

    def _exited(self, slot: _Slot, now: float) -> None:
        assert slot.child is not None
        code = slot.child.returncode
        # The rest of its group (a gunicorn master's workers, an embedded server's child).
        signal_group(slot.child.pid, signal.SIGTERM)
        if self._stopping_since is not None:
            self._say(f"{slot.name} stopped (rc={code})")
        elif code == EXIT_BAD_SETTINGS:
            self._say(f"{slot.name} exited with {describe_exit(code)} (a bad setting); stopping")
            self.stop(code)
        else:
            slot.delay = restart_delay(slot.delay, now - slot.started_at)
            slot.restart_at = now + slot.delay
            self._say(f"{slot.name} (pid {slot.child.pid}) exited with {describe_exit(code)}; "
                      f"restarting in {slot.delay:.1f}s")

    def _pump(self, slot: _Slot, child: Popen) -> None:
        for line in iter(child.stdout.readline, b""):
            self._lines.put(Message("line", line, datetime.datetime.now(), slot.name, slot.colour))
        child.stdout.close()

    def _print_lines(self, timeout: float) -> None:
        try:
            self._printer.write(self._lines.get(timeout=timeout) if timeout else
                                self._lines.get_nowait())
            while True:
                self._printer.write(self._lines.get_nowait())
        except queue.Empty:
            return

    def _say(self, text: str) -> None:
        self._printer.write(Message("line", text, datetime.datetime.now(), SYSTEM, None))
