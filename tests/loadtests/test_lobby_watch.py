"""The load test's lobby figures: when every lobby ticket has its place, and which admissions
were the lobby's (a fake Redis; no servers)."""

from __future__ import annotations

import math
import time

from loadtests.lobby_watch import LobbyWatch, lobby_admissions, lobby_placed


class FakeCounters:
    def __init__(self, answers: list[list[object]]) -> None:
        self.answers = answers

    def hmget(self, _key: str, *_fields: str) -> list[object]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_the_lobby_is_placed_only_once_closed_and_every_place_given():
    assert lobby_placed([None, None, None]) == (False, 0)
    assert lobby_placed(["1", "10", "4"]) == (False, 10)
    assert lobby_placed([b"1", b"10", b"10"]) == (True, 10)
    assert lobby_placed(["1", "0", None]) == (True, 0)  # an empty lobby is placed when closed


def test_the_watch_measures_from_the_opening():
    starts_at = time.time() + 0.05
    watch = LobbyWatch(FakeCounters([[None, None, None]] * 3 + [["1", "500", "500"]]), "sal_x",
                       starts_at, interval=0.01)
    watch.start()
    watch.join(timeout=5)
    assert watch.lobby_size == 500
    assert 0.0 <= watch.placed_after_s < 1.0


def test_a_lobby_never_placed_stays_unmeasured():
    watch = LobbyWatch(FakeCounters([["1", "5", "2"]]), "sal_x", time.time(), interval=0.01, timeout=0.1)
    watch.start()
    watch.join(timeout=5)
    assert math.isnan(watch.placed_after_s)


def test_lobby_admissions_are_those_sent_before_the_opening():
    assert lobby_admissions([(9.0, 3.0, 202), (9.9, 4.0, 202), (10.0, 50.0, 202)], 10.0) == [3.0, 4.0]
