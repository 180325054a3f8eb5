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
    assert made.updates == "poll" and made.join_early == LEAVERS_JOIN_EARLY_S
    assert made.open_in > made.join_early  # everyone joins the lobby before the opening
    assert sum(is_leaver(i, 1 / 3) for i in range(60)) == 20
    assert [is_leaver(i, 0.5) for i in range(4)] == [False, True, False, True]
    result = CliRunner().invoke(main, ["loadtest", "--updates", "poll", "--leavers", "0.33",
                                       "--services", str(tmp_path / "missing.json")])
    assert "--updates" not in result.output and "--leavers" not in result.output
    assert result.exit_code != 0  # it fails later, on the missing services file
