"""The lab's own parts: the lab file is validated before anything is created, with errors naming
key and value; fake host files, process records, cache writes and locks do what `lab up` and
`lab down` rely on."""

from pathlib import Path

import pytest

from lab import files, paths, state
from lab.files import atomic_write_text, read_json, sha256_file
from lab.hostlayer import fake_meminfo
from lab.inventory import _memberships
from lab.procs import ProcRecord, spawn, stop_all
from lab.spec import LabSpecError, load_spec

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


def test_default_fleet_has_distinct_profiles():
    spec = load_spec(REPO / "inventory/lab.yaml")
    assert len(spec.hosts) >= 4
    profiles = {(h.ram_gib, tuple((g.vendor, g.gib) for g in h.gpus), h.network) for h in spec.hosts}
    assert len(profiles) == len(spec.hosts)
    assert {u.shell for h in spec.hosts for u in h.users} == {"bash", "zsh", "fish"}
    assert any(h.network == "airgapped" for h in spec.hosts)
    assert any(h.ollama_preinstalled for h in spec.hosts)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("hosts: [{name: a, ram_gib: lots, users: [{name: dev}]}]", "hosts.0.ram_gib = 'lots'"),
        ("hosts: [{name: a, ram_gib: 8, users: [{name: 'x;rm -rf /'}]}]", "hosts.0.users.0.name"),
        ("hosts: [{name: A_B, ram_gib: 8, users: [{name: dev}]}]", "hosts.0.name = 'A_B'"),
        ("hosts: [{name: a, ram_gib: 8, gpus: [{vendor: intel, gib: 8}], users: [{name: dev}]}]",
         "hosts.0.gpus.0.vendor = 'intel'"),
        ("hosts: [{name: a, ram_gib: 8, network: wifi, users: [{name: dev}]}]", "hosts.0.network = 'wifi'"),
        ("hosts: [{name: a, ram_gib: 8, users: [{name: dev, shell: csh}]}]", "hosts.0.users.0.shell = 'csh'"),
        ("hosts: [{name: a, ram_gib: 8, users: []}]", "hosts.0.users"),
        ("hosts: [{name: a, ram_gib: 8, users: [{name: dev}], ollama_preinstalled: latest-ish}]",
         "not a version number: 'latest-ish'"),
        ("hosts: [{name: a, ram_gib: 8, users: [{name: dev}], ollama_preinstalled: '0.9.0'}]",
         "is not in internet.ollama_versions"),
        ("hosts: [{name: a, ram_gib: 8, users: [{name: dev}]}, {name: a, ram_gib: 8, users: [{name: dev}]}]",
         "duplicate host names"),
        ("hosts: [{name: a, ram_gib: 8, users: [{name: dev}], colour: red}]", "hosts.0.colour"),
        ("subnet: 10.0.0.0/24\nhosts: [{name: a, ram_gib: 8, users: [{name: dev}]}]", "subnet"),
        ("hosts: [{name: a, ram_gib: 8, users: [{name: root}]}]", "reserved user name"),
    ],
)
def test_invalid_lab_files_name_key_and_value(tmp_path, body, expected):
    with pytest.raises(LabSpecError) as info:
        load_spec(write(tmp_path, body))
    assert expected in str(info.value)
    assert str(tmp_path / "lab.yaml") in str(info.value)


def test_host_addresses_are_disjoint_per_host():
    spec = load_spec(REPO / "inventory/lab.yaml")
    pairs = [spec.host_addresses(i) for i in range(len(spec.hosts))]
    assert len({a for pair in pairs for a in pair}) == 2 * len(pairs)


def test_fake_meminfo_reports_the_host_ram():
    """A recorded /proc/meminfo: RAM and swap are the host's, every other line is kept."""
    control = ("MemTotal:       32768000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n"
               "Buffers:          100000 kB\nSwapTotal:       2097148 kB\nSwapFree:        2097148 kB\n")
    assert fake_meminfo(16, control) == (
        "MemTotal:       16441671 kB\nMemFree:        13975420 kB\nMemAvailable:   14797503 kB\n"
        "Buffers:          100000 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n")


def test_group_memberships():
    spec = load_spec(REPO / "inventory/lab.yaml")
    by_name = {h.name: _memberships(h) for h in spec.hosts}
    assert by_name["laptop"] == {"online", "cpu_only"}
    assert by_name["airgap"] == {"airgapped", "gpu", "amd"}
    assert by_name["bigbox"] == {"online", "gpu", "nvidia"}


def test_stop_all_only_signals_recorded_processes(tmp_path):
    record = spawn(["sleep", "30"], tmp_path / "log")
    stranger = ProcRecord(record.pid, record.start_ticks + 1, "sleep")
    assert record.alive() and not stranger.alive()
    assert stop_all([stranger]) == []
    assert record.alive()
    assert stop_all([record]) == [record]
    assert not record.alive()


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "deep/stamp.json"
    atomic_write_text(target, "one\n", mode=0o600)
    atomic_write_text(target, "two\n")
    assert target.read_text() == "two\n" and target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(TypeError):
        atomic_write_text(target, b"bytes")  # type: ignore[arg-type]
    assert target.read_text() == "two\n" and sorted(p.name for p in target.parent.iterdir()) == ["stamp.json"]


def test_read_json_takes_only_an_object(tmp_path):
    """An untrusted stamp means "redo": missing, broken or not an object all read as None."""
    path = tmp_path / "stamp.json"
    assert read_json(path) is None
    for text in ("{broken", "[1, 2]", "\"text\""):
        path.write_text(text)
        assert read_json(path) is None
    path.write_text('{"format": 1}')
    assert read_json(path) == {"format": 1}


def test_sha256_file(tmp_path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_held_lock_makes_a_second_lab_command_fail_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "STATE_ROOT", tmp_path)
    with files.locked(tmp_path / "demo/lock"):
        with pytest.raises(BlockingIOError):
            with files.locked(tmp_path / "demo/lock", wait=False):
                pass
        with pytest.raises(RuntimeError, match="lab 'demo' is busy"):
            with state.locked("demo"):
                pass
    with state.locked("demo"):
        with pytest.raises(BlockingIOError, match="from the body"):  # not taken for "busy"
            raise BlockingIOError("from the body")


def test_every_lab_test_module_has_a_lab_of_its_own():
    """`make test` runs lab test modules side by side: two labs with one name or one subnet would
    meet (state, veths, addresses). Each module's lab (a literal spec, or the default fleet under
    another name with lab_spec_file) has a name and a subnet nobody else uses, the default lab's
    included."""
    import re

    repo = Path(__file__).resolve().parent.parent
    labs = [("lab", "10.213")]  # inventory/lab.yaml: make demo's
    for module in sorted((repo / "tests/lab").glob("test_*.py")) + sorted((repo / "bench").glob("*.py")):
        text = module.read_text()
        labs += re.findall(r'"name": "([a-z0-9-]+)", "subnet": "(10\.\d+)\.0\.0/16"', text)
        labs += re.findall(r'lab_spec_file\([^,]+, "([a-z0-9-]+)", "(10\.\d+)\.0\.0/16"', text)
        labs += [(m[0], m[1]) for m in re.findall(r'"name": "([a-z0-9-]+)",\s*"subnet": "(10\.\d+)\.0\.0/16"', text)
                 if (m[0], m[1]) not in labs]
    names, subnets = [n for n, _ in labs], [s for _, s in labs]
    assert len(labs) > 15, labs  # the patterns still find the labs
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    assert len(set(subnets)) == len(subnets), sorted(s for s in subnets if subnets.count(s) > 1)
