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
