"""A poll notes its owner as present at most once per refresh interval per process."""

import itertools

from common.flash_sale.ticket_events import MIN_PRESENCE_TIMEOUT_SECONDS, PollPresence


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_polled_again_within_the_interval_is_not_written_again():
    clock = FakeClock()
    presence = PollPresence(every_seconds=5.0, clock=clock)
    assert presence.due("t1") is True
    clock.now += 4.9
    assert presence.due("t1") is False
    assert presence.due("t2") is True  # another ticket has its own interval
    clock.now += 0.1
    assert presence.due("t1") is True


def test_a_steady_poller_is_noted_often_enough_for_the_shortest_timeout():
    clock = FakeClock()
    presence = PollPresence(clock=clock)
    noted = []
    for _ in range(200):  # a poll every 0.7 s for 140 s
        if presence.due("t1"):
            noted.append(clock.now)
        clock.now += 0.7
    gaps = [b - a for a, b in itertools.pairwise(noted)]
    assert len(noted) < 200 / 5
    assert max(gaps) < MIN_PRESENCE_TIMEOUT_SECONDS / 2


def test_memory_stays_bounded_and_recent_entries_survive_a_sweep():
    clock = FakeClock()
    presence = PollPresence(every_seconds=5.0, capacity=100, clock=clock)
    for i in range(99):
        presence.due(f"old{i}")
    clock.now += 10
    assert presence.due("fresh") is True
    assert presence.due("new") is True  # the sweep drops the 99 old entries, keeps "fresh"
    assert presence.due("fresh") is False
    assert len(presence._noted_at) == 2
