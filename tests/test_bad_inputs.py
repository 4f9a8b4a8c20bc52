"""The bad-input corpus, without hosts: every case is refused by validation with host and key
(the cases that need a host's accounts or directories are checked on the lab)."""

from __future__ import annotations

import pytest

from localcode.settings import ConfigError, validate_host_data

from .bad_inputs.corpus import CASES, ON_HOST, SECRET


def test_corpus_is_large_and_distinct():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "data", "expected"), [c for c in CASES if c[0] not in ON_HOST],
                         ids=[c[0] for c in CASES if c[0] not in ON_HOST])
def test_bad_input_is_refused_with_host_and_key(case, data, expected):
    with pytest.raises(ConfigError) as info:
        validate_host_data("ws-dana", {"developer_users": ["dev"], **data})
    assert "host ws-dana" in str(info.value) and expected in str(info.value), str(info.value)
    assert SECRET not in str(info.value)
