"""The deploy's read-backs of the Ollama server (the derived model's parameters from /api/show,
a pinned digest from /api/tags, the running version), run against the stand-in, which prints
parameters as the real server does (Go's %v of a float64: num_ctx 1048576 is `1.048576e+06`)."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

import pytest

from localcode.models import _check_digest, _confirm_parameters
from localcode.ollama.common import wait_for_version

try:
    from tests.test_standin_harness import Standin, reg, sideload
except ImportError:  # tests/ not a package
    from test_standin_harness import Standin, reg, sideload

BASE = "nemotron-3-nano:30b"  # the catalog's 1M-context model
DERIVED = "localcode/nemotron-3-nano:30b-1024k"


class LocalHost:
    """What the read-backs use of a pyinfra host, running the commands on this machine."""

    def __init__(self):
        self.logged: list[str] = []

    def run_shell_command(self, cmd) -> tuple[bool, SimpleNamespace]:
        done = subprocess.run(["sh", "-c", cmd.get_raw_value()], capture_output=True, text=True, timeout=60)
        return done.returncode == 0, SimpleNamespace(stdout=done.stdout.rstrip("\n"))

    def log(self, message: str) -> None:
        self.logged.append(message)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Standin("0.21.0", name="readback")
    sideload(s.models, [BASE])
    s.start()
    modelfile = tmp_path_factory.mktemp("modelfile") / "Modelfile"
    modelfile.write_text(f"FROM {BASE}\nPARAMETER num_ctx 1048576\nPARAMETER temperature 0.3\n")
    created = s.cli("create", DERIVED, "-f", str(modelfile))
    assert created.returncode == 0, created.stderr
    yield s
    s.stop()


def api(srv) -> str:
    return srv.url.removeprefix("http://")


def test_the_standin_prints_a_million_token_context_like_go(srv):
    assert "num_ctx                        1.048576e+06" in srv.post("/api/show", {"model": DERIVED}).json()["parameters"]


def test_a_million_token_context_is_confirmed(srv):
    host = LocalHost()
    assert _confirm_parameters(None, host, api(srv), DERIVED, {"num_ctx": 1048576, "temperature": 0.3})
    assert host.logged == []


def test_a_different_context_or_parameter_fails_with_both_values(srv):
    host = LocalHost()
    assert not _confirm_parameters(None, host, api(srv), DERIVED, {"num_ctx": 2097152, "temperature": 0.3})
    assert host.logged == [f"{DERIVED}: /api/show reports num_ctx 1048576, planned 2097152"]
    host = LocalHost()
    assert not _confirm_parameters(None, host, api(srv), DERIVED, {"num_ctx": 1048576, "temperature": 0.7})
    assert host.logged == [f"{DERIVED}: /api/show reports temperature 0.3, planned 0.7"]


def test_a_missing_model_or_server_fails_with_the_reason(srv):
    host = LocalHost()
    assert not _confirm_parameters(None, host, api(srv), "localcode/ghost:1b-64k", {"num_ctx": 65536})
    assert host.logged == ["localcode/ghost:1b-64k: /api/show reports model 'localcode/ghost:1b-64k' not found"]
    host = LocalHost()
    assert not _confirm_parameters(None, host, f"127.0.0.1:{reg.free_port()}", DERIVED, {"num_ctx": 1048576})
    assert host.logged == [f"{DERIVED}: /api/show reports no JSON answer"]


def test_the_pinned_digest_is_checked_against_api_tags(srv):
    digest = {m["name"]: m["digest"] for m in srv.get("/api/tags").json()["models"]}[BASE]
    assert _check_digest(None, LocalHost(), api(srv), BASE, digest)
    host = LocalHost()
    assert not _check_digest(None, host, api(srv), BASE, "0" * 64)
    assert host.logged == [f"{BASE}: the registry served digest {digest}, pinned {'0' * 64}"]
    host = LocalHost()
    assert not _check_digest(None, host, api(srv), "ghost:1b", digest)
    assert host.logged == [f"ghost:1b: the registry served digest none, pinned {digest}"]


def test_the_running_version_is_waited_for(srv):
    assert wait_for_version(None, LocalHost(), api(srv), "0.21.0", 5)
    assert wait_for_version(None, LocalHost(), api(srv), "", 5)
    host = LocalHost()
    assert not wait_for_version(None, host, api(srv), "0.30.0", 2)
    assert host.logged == [f"Ollama server at {api(srv)} reports 0.21.0, expected 0.30.0: the service did not "
                           "come up at the installed version (see journalctl -u ollama)"]
