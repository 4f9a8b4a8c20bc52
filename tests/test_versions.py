"""Ollama version policy: floor raised by the model, upgrade rules, never a silent downgrade."""

import pytest

from localcode.versions import effective_floor, known_issue_warnings, choose_version


def test_floor_is_raised_by_the_model():
    assert effective_floor("0.14.3", "0.20.0") == "0.20.0"
    assert effective_floor("0.14.3", "0.14.3") == "0.14.3"
    assert effective_floor("0.15.0", None) == "0.15.0"


@pytest.mark.parametrize(("installed", "upgrade", "downgrade", "action", "version"), [
    (None, False, False, "install", "0.30.0"),
    ("0.13.5", False, False, "upgrade", "0.30.0"),
    ("0.14.3", False, False, "keep", "0.14.3"),
    ("0.14.3", True, False, "upgrade", "0.30.0"),
    ("0.30.0", True, False, "keep", "0.30.0"),
    ("0.33.0", True, False, "keep", "0.33.0"),
    ("0.33.0", True, True, "upgrade", "0.30.0"),
    ("0.33.0", False, True, "keep", "0.33.0"),
])
def test_choose_version(installed, upgrade, downgrade, action, version):
    choice = choose_version(installed, "0.30.0", "0.14.3", upgrade, downgrade)
    assert (choice.action, choice.version) == (action, version), choice.reason


def test_keep_says_why():
    choice = choose_version("0.14.3", "0.30.0", "0.14.3", upgrade=False)
    assert "meets the floor 0.14.3" in choice.reason and "ollama_upgrade is off" in choice.reason
    assert "not downgrading" in choose_version("0.33.0", "0.30.0", "0.14.3", upgrade=True).reason


def test_target_below_floor_is_an_error():
    with pytest.raises(ValueError, match="below the effective floor 0.20.0"):
        choose_version(None, "0.19.0", "0.20.0", upgrade=False)


def test_known_issue_warnings():
    assert len(known_issue_warnings("0.14.3")) == 2
    assert len(known_issue_warnings("0.18.0")) == 1 and "0.19.0" in known_issue_warnings("0.18.0")[0]
    assert known_issue_warnings("0.19.0") == ()
