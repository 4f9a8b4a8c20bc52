"""Issue 5 on the lab: base and derived models, idempotent, parameter changes recreate only
the derived model, a model missing from the registry fails its host alone."""

from __future__ import annotations

import json

import pytest

from lab import fleet

from .conftest import Lab, lab_spec_file, start_lab
from .deploy_helpers import changed_ops, deploy, failed_hosts, write_inventory

pytestmark = pytest.mark.lab
ONLINE = ("laptop", "gpuws")
GHOST = {
    "tag": "team/ghost:1b", "rank": 1, "rank_basis": "test: a model the registry does not have",
    "active_params_b": 1.0, "download_bytes": 10**9, "weights_bytes": 10**9, "kv_bytes_per_token_f16": 4096,
    "kv_fixed_bytes": 0, "max_context": 131072, "capabilities": ["completion", "tools"], "min_ollama": "0.14.3",
    "sources": {k: "test" for k in ("size", "kv", "max_context", "capabilities", "min_ollama", "active_params_b")},
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = lab_spec_file(tmp_path_factory.mktemp("models"), "mdl", "10.219.0.0/16", hosts=list(ONLINE))
    lab = start_lab(path)
    yield lab
    fleet.down(lab.spec.name)


def show(lab: Lab, host: str, model: str) -> dict:
    body = json.dumps({"model": model})
    return json.loads(lab.ssh(host, f"curl -sf -X POST -d '{body}' http://127.0.0.1:11434/api/show").stdout)


def tags(lab: Lab, host: str) -> dict[str, str]:
    out = json.loads(lab.ssh(host, "curl -sf http://127.0.0.1:11434/api/tags").stdout)
    return {m["name"]: m["digest"] for m in out["models"]}


def planned(lab: Lab, tmp_path) -> dict[str, dict]:
    from subprocess import run

    from .conftest import REPO

    out = run([str(REPO / ".venv/bin/localcode"), "plan", str(tmp_path / "first.py"), "--json"],
              cwd=REPO, env=lab.pyinfra_env(), capture_output=True, text=True, check=True).stdout
    return {p["host"]: p for p in json.loads(out)}


def test_models_pulled_derived_idempotent_and_parameter_changes(lab: Lab, tmp_path):
    write_inventory(tmp_path / "first.py", lab)
    code, results, err = deploy(lab, tmp_path / "first.py")
    assert code == 0, err
    plans = planned(lab, tmp_path)
    for host in ONLINE:
        plan = plans[host]
        present = tags(lab, host)
        assert plan["model"] in present and plan["name"] in present
        assert f"num_ctx                        {plan['num_ctx']}" in show(lab, host, plan["name"])["parameters"]

    code, results, err = deploy(lab, tmp_path / "first.py")
    assert code == 0 and changed_ops(results) == [], err

    before = {h: tags(lab, h) for h in ONLINE}
    warmer = {h: {"model_parameters": {"temperature": 0.3, "top_p": 0.9}} for h in ONLINE}
    code, results, err = deploy(lab, write_inventory(tmp_path / "warmer.py", lab, warmer))
    assert code == 0, err
    changed = {name for name, _ in changed_ops(results)}
    assert all(n in ("Modelfile of the derived model", "Derived model") for n in changed), changed
    for host in ONLINE:
        plan = plans[host]
        params = show(lab, host, plan["name"])["parameters"]
        assert "temperature                    0.3" in params and "top_p                          0.9" in params
        after = tags(lab, host)
        assert after[plan["model"]] == before[host][plan["model"]]  # base untouched: no pull
        assert after[plan["name"]] != before[host][plan["name"]]
    log = lab.ssh("gpuws", "cat /usr/share/ollama/.ollama/standin-requests.jsonl").stdout
    pulls = [json.loads(line) for line in log.splitlines() if '"/api/pull"' in line]
    assert len(pulls) == 1


def test_model_missing_from_registry_fails_its_host_alone(lab: Lab, tmp_path):
    ghost = {"gpuws": {"extra_models": [GHOST], "model": "team/ghost:1b"}}
    code, results, err = deploy(lab, write_inventory(tmp_path / "ghost.py", lab, ghost))
    assert code != 0
    assert failed_hosts(results) == {"gpuws"}
    assert "team/ghost:1b" in err and "file does not exist" in err


def test_a_million_token_context_is_created_and_confirmed(lab: Lab, tmp_path):
    """Ollama prints num_ctx 1048576 as `1.048576e+06` in /api/show: read back as a number, the
    derived model is confirmed, and a second run leaves it alone."""
    million = {"gpuws": {"model": "nemotron-3-nano:30b", "num_ctx": 1048576}}
    inventory = write_inventory(tmp_path / "million.py", lab, million)
    code, results, err = deploy(lab, inventory, "--limit", "gpuws")
    assert code == 0, err
    name = "localcode/nemotron-3-nano:30b-1024k"
    assert "num_ctx                        1.048576e+06" in show(lab, "gpuws", name)["parameters"]
    code, results, err = deploy(lab, inventory, "--limit", "gpuws")
    assert code == 0 and changed_ops(results) == [], err
