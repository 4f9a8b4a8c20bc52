"""Issue 9's corpus on the lab: every bad value stops the real deploy with host and key, exits
non-zero, and no host changes (their overlay upper directories compared before and after)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab import fleet

from ..bad_inputs.corpus import CASES, SECRET
from .conftest import REPO, Lab, lab_spec_file, start_lab
from .deploy_helpers import write_inventory

pytestmark = pytest.mark.lab
# What a login itself writes (wtmp/lastlog, the journal), not the deploy.
LOGIN_TRACES = ("var/log/", "var/lib/systemd/")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = lab_spec_file(tmp_path_factory.mktemp("bad"), "bad", "10.223.0.0/16", hosts=["laptop", "gpuws"])
    lab = start_lab(path)
    yield lab
    fleet.down(lab.spec.name)


def snapshot(lab: Lab) -> dict[str, tuple]:
    """Every file in every host's upper directory: path, size, mode, owner, mtime."""
    state = {}
    for name, host in lab.state.data["hosts"].items():
        upper = Path(host["upper"])
        for root, dirs, files in os.walk(upper):
            for entry in dirs + files:
                path = Path(root, entry)
                rel = path.relative_to(upper).as_posix()
                if rel.startswith(LOGIN_TRACES):
                    continue
                st = path.lstat()
                state[f"{name}:{rel}"] = (st.st_size, st.st_mode, st.st_uid, st.st_mtime_ns)
    return state


def test_the_snapshot_sees_a_change(lab: Lab):
    before = snapshot(lab)
    lab.ssh("laptop", "touch /etc/localcode-probe && rm /etc/localcode-probe && touch /root/probe")
    after = snapshot(lab)
    assert "laptop:root/probe" in set(after) - set(before)
    assert after != before
    lab.ssh("laptop", "rm /root/probe")


@pytest.mark.parametrize(("case", "data", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_changes_no_host(lab: Lab, tmp_path, case, data, expected):
    before = snapshot(lab)
    inventory = write_inventory(tmp_path / "inv.py", lab, {"laptop": data})
    result = subprocess.run([str(REPO / ".venv/bin/pyinfra"), "-y", str(inventory), "deploy.py"],
                            cwd=REPO, env=lab.pyinfra_env(), capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "host laptop" in output and expected in output, output[-2000:]
    assert "Traceback" not in output and SECRET not in output
    assert snapshot(lab) == before
