"""`flashsale loadtest` refuses a malformed --card-entry before touching any system."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from common.cli import main


@pytest.mark.parametrize("value", ["5,1", "-1,2", "3", "a,b", "1,2,3"])
def test_card_entry_must_be_min_max_seconds(value, tmp_path):
    result = CliRunner().invoke(main, ["loadtest", "--card-entry", value,
                                       "--services", str(tmp_path / "missing.json")])
    assert result.exit_code == 2, result.output
    assert "--card-entry" in result.output and "0 <= MIN <= MAX" in result.output


def test_a_valid_card_entry_gets_past_the_check(tmp_path):
    result = CliRunner().invoke(main, ["loadtest", "--card-entry", "0,0",
                                       "--services", str(tmp_path / "missing.json")])
    assert "--card-entry" not in result.output  # it fails later, on the missing services file
    assert result.exit_code != 0


@pytest.mark.parametrize(("option", "value"), [("--updates", "push"), ("--leavers", "1"),
                                               ("--leavers", "-0.1"), ("--leavers", "half")])
def test_updates_and_leavers_are_checked(option, value, tmp_path):
    result = CliRunner().invoke(main, ["loadtest", option, value,
                                       "--services", str(tmp_path / "missing.json")])
    assert result.exit_code == 2, result.output
    assert option in result.output


def test_shoppers_follow_the_stream_by_default_and_leavers_turn_presence_on(tmp_path):
    from loadtests.runner import LEAVERS_JOIN_EARLY_S, LoadTestOptions
    from loadtests.ticket_stream import is_leaver

    assert LoadTestOptions().resolved().updates == "sse"
    made = LoadTestOptions(leavers=1 / 3, updates="poll").resolved()
    assert made.updates == "poll" and made.arrival == "lobby"
    # everyone has joined the lobby 25 s before the opening: away longer than presence's 15 s
    assert made.open_in == made.join_early
    assert made.join_early - made.arrival_window == LEAVERS_JOIN_EARLY_S
    assert sum(is_leaver(i, 1 / 3) for i in range(60)) == 20
    assert [is_leaver(i, 0.5) for i in range(4)] == [False, True, False, True]
    result = CliRunner().invoke(main, ["loadtest", "--updates", "poll", "--leavers", "0.33",
                                       "--services", str(tmp_path / "missing.json")])
    assert "--updates" not in result.output and "--leavers" not in result.output
    assert result.exit_code != 0  # it fails later, on the missing services file


def test_the_surge_arrives_over_a_lobby_by_default_and_the_opening_race_is_kept():
    from loadtests.runner import LoadTestOptions

    surge = LoadTestOptions(scenario="surge").resolved()
    assert (surge.arrival, surge.users, surge.stock, surge.lobby_window) == ("lobby", 10_000, 500, 60.0)
    # the sale starts a lobby window after its creation; arrivals span it, the last 1 s before
    assert surge.open_in == surge.join_early == 60.0 and surge.arrival_window == 59.0
    small = LoadTestOptions(scenario="surge", users=40, stock=10, lobby_window=6).resolved()
    assert (small.open_in, small.join_early, small.arrival_window) == (6.0, 6.0, 5.0)
    race = LoadTestOptions(scenario="surge", arrival="opening").resolved()
    assert (race.arrival, race.lobby_window, race.join_early) == ("opening", None, 0.0)
    assert race.arrival_window == race.open_in == 5.0
    shoppers = LoadTestOptions().resolved()
    assert (shoppers.arrival, shoppers.arrival_window) == ("opening", 1.0)


@pytest.mark.parametrize(("args", "hint"), [(["--arrival", "race"], "--arrival"),
                                            (["--lobby-window", "1"], "--lobby-window"),
                                            (["--lobby-window", "soon"], "--lobby-window")])
def test_arrival_and_lobby_window_are_checked(args, hint, tmp_path):
    result = CliRunner().invoke(main, ["loadtest", "--scenario", "surge", *args,
                                       "--services", str(tmp_path / "missing.json")])
    assert result.exit_code == 2, result.output
    assert hint in result.output


def test_valid_arrival_options_get_past_the_checks(tmp_path):
    result = CliRunner().invoke(main, ["loadtest", "--scenario", "surge", "--arrival", "opening",
                                       "--arrival-window", "2", "--services", str(tmp_path / "missing.json")])
    assert "--arrival" not in result.output and result.exit_code != 0  # fails on the services file
    result = CliRunner().invoke(main, ["loadtest", "--scenario", "surge", "--lobby-window", "30",
                                       "--services", str(tmp_path / "missing.json")])
    assert "--lobby-window" not in result.output and result.exit_code != 0


def test_the_draw_scenario_is_an_option(tmp_path):
    result = CliRunner().invoke(main, ["loadtest", "--scenario", "draw", "--users", "5", "--stock", "2",
                                       "--admin-email", "op@example.com", "--admin-password", "x",
                                       "--services", str(tmp_path / "missing.json")])
    assert "--scenario" not in result.output  # it fails later, on the missing services file
    assert "missing.json does not exist" in result.output and result.exit_code == 1, result.output


def test_the_draw_walk_figures_are_bench_draws():
    from loadtests.bench_draw import walk_figures

    lines = walk_figures(entries=50, winners_s=1.3, walked_s=2.9, stripe_calls=38, rate=25, walk_s=1.9)
    assert lines[0] == "time from the start to the last winner charged: 1.3 s"
    assert lines[1] == "time from the start to the last hold released: 2.9 s"
    assert lines[2] == "Stripe calls per second during the walk: 20.0 (limit 25)"
