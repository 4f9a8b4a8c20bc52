"""The lab file is validated before anything is created, with errors naming key and value."""

from pathlib import Path

import pytest

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
    text = fake_meminfo(16, Path("/proc/meminfo").read_text())
    fields = {line.split(":")[0]: line.split()[1] for line in text.splitlines()}
    total_kb = int(fields["MemTotal"])
    assert 15 * 1024 * 1024 < total_kb <= 16 * 1024 * 1024
    assert int(fields["MemAvailable"]) < total_kb
    assert len(text.splitlines()) == len(Path("/proc/meminfo").read_text().splitlines())


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
