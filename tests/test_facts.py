"""Facts parse real command output; unparseable output fails that host with a short excerpt."""

from __future__ import annotations

import subprocess

import pytest
from pyinfra.api.exceptions import FactProcessError

from localcode.facts import Account, AccountsFact, HardwareFact, OllamaFact, parse_accounts, parse_hardware, parse_ollama
from localcode.sizing import GiB, MiB

M = "::localcode::"


def test_linux_two_nvidia_gpus():
    out = [f"{M}uname", "Linux", "x86_64", f"{M}meminfo", "MemTotal:       131595268 kB",
           f"{M}nvidia", "NVIDIA RTX A5000, 24564", "NVIDIA RTX A5000, 24564", f"{M}nvidia-rc", "0"]
    hw = parse_hardware(out)
    assert hw.ram_bytes == 131595268 * 1024
    assert [(g.vendor, g.vram_bytes, g.name) for g in hw.gpus] == [("nvidia", 24564 * MiB, "NVIDIA RTX A5000")] * 2
    assert not hw.warnings and not hw.apple_silicon


def test_nvidia_without_driver_is_a_warning_not_a_gpu():
    out = [f"{M}uname", "Linux", "x86_64", f"{M}meminfo", "MemTotal: 65000000 kB", f"{M}nvidia",
           "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", f"{M}nvidia-rc", "9"]
    hw = parse_hardware(out)
    assert hw.gpus == () and "no working NVIDIA driver" in hw.warnings[0]


def test_dgx_spark_reports_no_memory():
    out = [f"{M}uname", "Linux", "aarch64", f"{M}meminfo", "MemTotal: 128000000 kB",
           f"{M}nvidia", "NVIDIA GB10, [N/A]", f"{M}nvidia-rc", "0"]
    hw = parse_hardware(out)
    assert hw.gpus == () and "[N/A]" not in hw.warnings[0] and "no memory size" in hw.warnings[0]


def test_amd_rocm_json():
    out = [f"{M}uname", "Linux", "x86_64", f"{M}meminfo", "MemTotal: 32000000 kB", f"{M}amd",
           '{"card0": {"VRAM Total Memory (B)": "17163091968", "VRAM Total Used Memory (B)": "1"}}',
           f"{M}amd-rc", "0"]
    assert parse_hardware(out).gpus[0].vram_bytes == 17163091968


def amd_host(*sections: str, cards: int = 1) -> list[str]:
    """A Linux host with `cards` 16 GiB AMD cards (rocm-smi) and these further sections."""
    memory = ", ".join(f'"card{i}": {{"VRAM Total Memory (B)": "17163091968"}}' for i in range(cards))
    return [f"{M}uname", "Linux", "x86_64", f"{M}meminfo", "MemTotal: 32000000 kB", f"{M}amd", f"{{{memory}}}",
            f"{M}amd-rc", "0", *sections]


def kfd(*values: int) -> list[str]:
    """The KFD topology as the fact prints it: node 0 the CPU, then the GPUs."""
    return [f"{M}kfd", "node 0 gfx_target_version 0", *(f"node {i} gfx_target_version {v}"
                                                          for i, v in enumerate(values, 1)), "end"]


def product(*versions: str | None, rc: str = "0") -> list[str]:
    cards = ", ".join(f'"card{i}": {{"Card Series": "Navi 23"' + (f', "GFX Version": "{v}"' if v else "") + "}"
                      for i, v in enumerate(versions))
    return [f"{M}amd-product", f"{{{cards}}}", f"{M}amd-product-rc", rc]


def test_amd_gfx_targets_from_the_kernel_matched_to_the_cards_in_order():
    hw = parse_hardware(amd_host(*kfd(100302, 110003), cards=2))
    assert hw.gfx_targets == {"card0": "gfx1032", "card1": "gfx1103"} and not hw.warnings


def test_amd_kfd_nodes_in_numeric_order_and_nodes_without_the_key():
    out = amd_host(f"{M}kfd", "node 10 gfx_target_version 90012", "node 2 gfx_target_version 100301",
                   "node 0", "node 1 gfx_target_version 0", "end", cards=2)
    assert parse_hardware(out).gfx_targets == {"card0": "gfx1031", "card1": "gfx90c"}


def test_amd_counts_that_differ_match_only_when_every_gpu_is_the_same():
    assert parse_hardware(amd_host(*kfd(100302), cards=2)).gfx_targets == {"card0": "gfx1032", "card1": "gfx1032"}
    hw = parse_hardware(amd_host(*kfd(100302, 110003, 110000), cards=2))
    assert hw.gfx_targets == {} and "which card is which target is unknown" in hw.warnings[0]


def test_amd_gfx_targets_from_rocm_smi_where_the_kernel_says_nothing():
    assert parse_hardware(amd_host(*product("gfx1032"))).gfx_targets == {"card0": "gfx1032"}
    # older rocm-smi prints a lossy decimal form: gfx90a as gfx9010, gfx1103 as gfx11003
    assert parse_hardware(amd_host(*product("gfx9010", "gfx11003"), cards=2)).gfx_targets == \
        {"card0": "gfx90a", "card1": "gfx1103"}
    # rocm-smi before ROCm 6.1.1 has no GFX Version at all: the target stays unknown
    assert parse_hardware(amd_host(*product(None))).gfx_targets == {}
    assert parse_hardware(amd_host(*product("N/A"))).gfx_targets == {}
    # the kernel wins where both answer (the host asks rocm-smi only when the kernel has nothing)
    assert parse_hardware(amd_host(*kfd(100302), *product("gfx1100"))).gfx_targets == {"card0": "gfx1032"}


def test_a_failing_product_query_leaves_the_target_unknown():
    hw = parse_hardware(amd_host(*product("gfx1032", rc="2")))
    assert hw.gfx_targets == {} and hw.gpus and "--showproductname failed (exit 2)" in hw.warnings[0]


def test_apple_silicon_with_wired_limit():
    out = [f"{M}uname", "Darwin", "arm64", f"{M}darwin", str(48 * GiB), "Apple M4 Pro", "40960"]
    hw = parse_hardware(out)
    assert hw.apple_silicon and hw.apple_chip == "Apple M4 Pro"
    assert hw.hardware().wired_limit_bytes == 40 * GiB
    assert parse_hardware(out[:-1] + ["0"]).wired_limit_bytes is None


@pytest.mark.parametrize(("out", "expected"), [
    ([f"{M}uname", "Linux", "x86_64", f"{M}meminfo", "MemTotal: lots"],
     "hardware: /proc/meminfo: cannot read MemTotal: 'MemTotal: lots'"),
    ([f"{M}uname", "Linux", "x86_64", f"{M}meminfo", "MemTotal: 1 kB"],
     "hardware: /proc/meminfo: MemTotal out of range (1 GiB to 64 TiB): 'MemTotal: 1 kB'"),
    ([f"{M}uname", "Linux", "x86_64", f"{M}meminfo", "MemTotal: 8000000 kB", f"{M}nvidia", "garbage", f"{M}nvidia-rc",
      "0"], "hardware: nvidia-smi line 1: expected 'name, memory.total': 'garbage'"),
    ([f"{M}uname", "Linux", "x86_64", f"{M}meminfo", "MemTotal: 8000000 kB", f"{M}amd", "{not json", f"{M}amd-rc",
      "0"], "hardware: rocm-smi: not JSON (Expecting property name enclosed in double quotes at line 1): '{not json'"),
    (["bash: uname: command not found"],
     "hardware: uname: expected the OS and the architecture: 'bash: uname: command not found'"),
])
def test_unparseable_output_fails_the_host_with_a_short_excerpt(out, expected):
    with pytest.raises(FactProcessError) as info:
        parse_hardware(out)
    assert str(info.value) == expected


def test_hardware_command_runs_here():
    output = subprocess.run(["sh", "-c", HardwareFact().command(("root", "nobody-here"))],
                            capture_output=True, text=True).stdout
    hw = parse_hardware(output.splitlines())
    assert hw.os == "Linux" and hw.ram_bytes > GiB and hw.login == "root"
    assert hw.accounts["root"].home == "/root" and hw.accounts["nobody-here"] is None


def test_hardware_command_reads_the_kfd_topology_and_asks_rocm_smi_only_without_it(tmp_path):
    """The command's own KFD loop and fallback, against a fake topology tree and a fake rocm-smi
    on PATH (the real paths are substituted: this machine has no AMD GPU)."""
    nodes = tmp_path / "nodes"
    for node, value in (("0", "0"), ("1", "100302"), ("10", "90012")):
        (nodes / node).mkdir(parents=True)
        (nodes / node / "properties").write_text(f"cpu_cores_count 0\ngfx_target_version {value}\nvendor_id 4098\n")
    (tmp_path / "bin").mkdir()
    smi = tmp_path / "bin/rocm-smi"
    smi.write_text('#!/bin/sh\ncase "$*" in *showmeminfo*) '
                   'echo \'{"card0": {"VRAM Total Memory (B)": "8573157376"}, "card1": {"VRAM Total Memory (B)": "536870912"}}\';; '
                   '*) echo \'{"card0": {"GFX Version": "gfx1100"}, "card1": {"GFX Version": "gfx1100"}}\';; esac\n')
    smi.chmod(0o755)
    command = HardwareFact().command().replace("/sys/class/kfd/kfd/topology/nodes", str(nodes))
    env = {"PATH": f"{tmp_path}/bin:/usr/bin:/bin"}
    output = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env).stdout
    assert f"{M}amd-product" not in output  # rocm-smi's product names are not asked for
    assert parse_hardware(output.splitlines()).gfx_targets == {"card0": "gfx1032", "card1": "gfx90c"}
    command = HardwareFact().command().replace("/sys/class/kfd/kfd/topology/nodes", str(tmp_path / "absent"))
    output = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env).stdout
    assert f"{M}kfd" not in output and parse_hardware(output.splitlines()).gfx_targets == {"card0": "gfx1100",
                                                                                         "card1": "gfx1100"}


def test_ollama_binary_and_server_versions_are_separate():
    out = [f"{M}bin", "/usr/local/bin/ollama", f"{M}client",
           "Warning: could not connect to a running Ollama instance", "Warning: client version is 0.30.0",
           f"{M}version", '{"version":"0.13.5"}', f"{M}tags",
           '{"models":[{"name":"gpt-oss:20b","digest":"' + "a" * 64 + '","size":13780000000}]}']
    state = parse_ollama(out)
    assert (state.binary_version, state.server_version) == ("0.30.0", "0.13.5")
    assert state.models[0].name == "gpt-oss:20b" and state.models[0].digest == "a" * 64


def test_ollama_absent_and_server_down():
    state = parse_ollama([f"{M}bin", "", f"{M}client", f"{M}version", "", f"{M}tags"])
    assert state.binary is None and state.binary_version is None and state.server_version is None
    with pytest.raises(FactProcessError, match="api/version"):
        parse_ollama([f"{M}bin", "/x", f"{M}client", f"{M}version", "<html>"])


def test_ollama_command_quotes_its_address():
    assert "'http://127.0.0.1:11434; id'" in OllamaFact().command("127.0.0.1:11434; id")


def test_accounts():
    out = [f"{M}users", "dev:x:1000:1000::/home/dev:/bin/bash", "ghost:?missing"]
    accounts = parse_accounts(out)
    assert accounts["dev"].home == "/home/dev" and accounts["dev"].shell == "/bin/bash"
    assert accounts["ghost"] is None
    with pytest.raises(FactProcessError):
        parse_accounts([f"{M}users", "dev:x:y"])


def test_accounts_command_runs_here():
    output = subprocess.run(["sh", "-c", AccountsFact().command(("root", "no-such-user"))],
                            capture_output=True, text=True).stdout
    accounts = parse_accounts(output.splitlines())
    assert accounts["root"].uid == 0 and accounts["no-such-user"] is None


# `dscl . -read /Users/<name> NFSHomeDirectory UserShell UniqueID PrimaryGroupID` as macOS prints it.
DSCL_ANA = ["NFSHomeDirectory: /Users/ana", "PrimaryGroupID: 20", "UniqueID: 501", "UserShell: /bin/zsh"]


def dscl(name: str, *lines: str) -> list[str]:
    return [f"{M}users", f"{M}dscl:{name}", *lines]


def test_accounts_from_dscl_records():
    out = [*dscl("ana", *DSCL_ANA), f"{M}dscl:bo", "NFSHomeDirectory:", " /Users/Bo Lima", "PrimaryGroupID: 20",
           "UniqueID: 502", "UserShell:", " /opt/homebrew/bin/fish", f"{M}dscl:ghost", "?missing"]
    assert parse_accounts(out) == {
        "ana": Account("ana", 501, 20, "/Users/ana", "/bin/zsh"),
        "bo": Account("bo", 502, 20, "/Users/Bo Lima", "/opt/homebrew/bin/fish"),
        "ghost": None,
    }


def test_hardware_fact_reads_dscl_records_of_a_mac():
    out = [f"{M}uname", "Darwin", "arm64", f"{M}darwin", str(48 * GiB), "Apple M4 Pro", "0", f"{M}login", "ana",
           *dscl("ana", *DSCL_ANA)]
    assert parse_hardware(out).accounts == {"ana": Account("ana", 501, 20, "/Users/ana", "/bin/zsh")}


def ana_with(key: str, *lines: str) -> list[str]:
    """Ana's record with the line of `key` replaced by `lines` (left out when there are none)."""
    return [new for line in DSCL_ANA for new in (lines if line.startswith(f"{key}:") else (line,))]


@pytest.mark.parametrize(("lines", "expected"), [
    (ana_with("UniqueID", "UniqueID: ５０１"), "accounts: ana: uid is not a 32-bit whole number: '???'"),
    (ana_with("UniqueID", "UniqueID: -2"), "accounts: ana: uid is not a 32-bit whole number: '-2'"),
    (ana_with("UniqueID", "UniqueID: 4294967296"), "accounts: ana: uid is not a 32-bit whole number: '4294967296'"),
    (ana_with("UniqueID", "UniqueID: 501 0"), "accounts: ana: dscl printed several values for UniqueID"),
    (ana_with("NFSHomeDirectory", "NFSHomeDirectory: Users/ana"),
     "accounts: ana: home is not an absolute path: 'Users/ana'"),
    (ana_with("NFSHomeDirectory", "NFSHomeDirectory:", " /Users/a\x1bb"),
     "accounts: ana: home too long or with control characters: '/Users/a?b'"),
    (ana_with("NFSHomeDirectory", "NFSHomeDirectory:"), "accounts: ana: dscl printed no value for NFSHomeDirectory"),
    (ana_with("UserShell"), "accounts: ana: dscl printed no UserShell"),
    (ana_with("UserShell", "UserShell:"), "accounts: ana: dscl printed no UserShell"),
    (ana_with("UserShell", "No such key: UserShell"), "accounts: ana: unexpected dscl line: 'No such key'"),
    ([*DSCL_ANA, "UniqueID: 0"], "accounts: ana: dscl printed UniqueID twice"),
    (["RealName: Ana", *DSCL_ANA], "accounts: ana: unexpected dscl line: 'RealName'"),
    ([*DSCL_ANA, *DSCL_ANA, "UniqueID: 0"], "accounts: ana: dscl printed 9 lines, more than its keys take"),
    ([], "accounts: ana: dscl printed no NFSHomeDirectory, UserShell, UniqueID, PrimaryGroupID"),
])
def test_hostile_dscl_records_fail_the_host(lines, expected):
    with pytest.raises(FactProcessError) as info:
        parse_accounts(dscl("ana", *lines))
    assert str(info.value) == expected


def test_one_user_from_two_sources_or_an_odd_name_fails_the_host():
    with pytest.raises(FactProcessError, match="one user reported twice"):
        parse_accounts([f"{M}users", "ana:x:501:20::/Users/ana:/bin/zsh", f"{M}dscl:ana", *DSCL_ANA])
    with pytest.raises(FactProcessError, match="not a user name"):
        parse_accounts(dscl("a b", *DSCL_ANA))


def test_passwd_failures_never_quote_the_gecos_field():
    with pytest.raises(FactProcessError) as info:
        parse_accounts([f"{M}users", "dev:x:1000:1000:Dana, +1 555 0100:relative:/bin/bash"])
    assert str(info.value) == "accounts: dev: home is not an absolute path: 'relative'"


def test_accounts_command_takes_the_dscl_branch_without_getent(tmp_path):
    """The macOS branch, run here: no getent on PATH, a dscl that prints a recorded record."""
    record = tmp_path / "ana.dscl"
    record.write_text("\n".join(DSCL_ANA) + "\n")
    fake = tmp_path / "dscl"
    fake.write_text('#!/bin/sh\n[ "$*" = ". -read /Users/ana NFSHomeDirectory UserShell UniqueID PrimaryGroupID" ] '
                    f"&& exec /bin/cat {record}\n"
                    "echo 'DS Error: -14136 (eDSRecordNotFound)' >&2; exit 56\n")
    fake.chmod(0o755)

    def run(*users: str) -> list[str]:
        command = AccountsFact().command(users)
        return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, cwd=tmp_path,
                              env={"PATH": str(tmp_path)}).stdout.splitlines()

    output = run("ana", "ghost", "ana")
    assert output == [f"{M}users", f"{M}dscl:ana", *DSCL_ANA, f"{M}dscl:ghost", "?missing"]
    assert parse_accounts(output) == {"ana": Account("ana", 501, 20, "/Users/ana", "/bin/zsh"), "ghost": None}
    assert run("x'; touch pwned; '") == [f"{M}users", f"{M}dscl:x'; touch pwned; '", "?missing"]
    assert not (tmp_path / "pwned").exists()


def test_ollama_show_of_missing_or_broken_models_is_none():
    out = [f"{M}bin", "/x", f"{M}client", "ollama version is 0.30.0", f"{M}version", '{"version":"0.30.0"}',
           f"{M}tags", '{"models":[]}',
           f"{M}show:a:1", '{"error":"model not found"}', "404",
           f"{M}show:b:1", '{"error":"open blobs/sha256-x: no such file or directory"}', "500",
           f"{M}show:c:1", '{"parameters":"num_ctx                        65536","model_info":{"x.context_length":131072},'
           '"capabilities":["completion","tools"]}', "200"]
    shown = parse_ollama(out).shown
    assert shown["a:1"] is None and shown["b:1"] is None
    assert shown["c:1"].parameters == {"num_ctx": 65536} and shown["c:1"].context_length == 131072


def test_ollama_host_fact_reads_server_and_layout_without_mixing_them():
    from localcode.ollama import OllamaHostFact

    out = [f"{M}bin", "/usr/local/bin/ollama", f"{M}client", "Warning: client version is 0.30.0",
           f"{M}version", '{"version":"0.30.0"}', f"{M}tags", '{"models":[]}',
           f"{M}releases", "0.30.0-amd64", f"{M}current", "/usr/local/lib/localcode/ollama/0.30.0-amd64",
           f"{M}bin-link", "link", "/usr/local/lib/localcode/ollama/current/bin/ollama", f"{M}manual-lib",
           f"{M}tools", "curl", "zstd", "tar", f"{M}user", "ollama render video", f"{M}group", "yes",
           f"{M}device-groups", "render", "video", f"{M}service", "active", "enabled"]
    state, layout = OllamaHostFact().process(out)
    assert state.binary == "/usr/local/bin/ollama" and state.binary_version == "0.30.0"
    assert layout.bin_kind == "link" and layout.current == "0.30.0-amd64"
    assert layout.user_groups == ("ollama", "render", "video") and layout.active and layout.enabled


def test_ollama_host_fact_command_keeps_sections_on_their_own_lines():
    """Run the real command with no server: every marker must start its own line."""
    from localcode.ollama import OllamaHostFact

    command = OllamaHostFact().command(api="127.0.0.1:9", show=("localcode/x:1",), layout=True)
    output = subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout.splitlines()
    state, layout = OllamaHostFact().process(output)
    assert state.server_version is None and layout is not None and layout.bin_kind in ("missing", "link", "file")


def test_hostile_passwd_lines_fail_the_host_without_a_traceback():
    for line in ("dev:x:²:1000::/home/dev:/bin/bash", "dev:x:1000:1000::relative:/bin/bash",
                 "dev:x:99999999999:1000::/home/dev:/bin/bash"):
        with pytest.raises(FactProcessError):
            parse_accounts(["::localcode::users", line])
    with pytest.raises(FactProcessError):  # one name twice: which account would we write as?
        parse_accounts(["::localcode::users", "dev:x:1000:1000::/home/dev:/bin/bash",
                        "dev:x:0:0::/root:/bin/bash"])
