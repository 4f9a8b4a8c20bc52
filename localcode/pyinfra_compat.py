"""Adapt pyinfra 3.10's command line to localcode (loaded from config.py, before any host is
contacted); re-check every piece on a pyinfra upgrade.

- When a host vanishes mid-run (power cut, network gone), paramiko re-raises its transport's
  EOFError on the next command, and pyinfra, which catches only OSError/SSHException/TimeoutError
  around commands and facts, aborts *every* host's run: that EOFError becomes an SSHException,
  so only the vanished host fails.
- paramiko's own tracebacks for an unreachable host are kept out of the operator's way.
- After the run, what each host got is reported (localcode/summary.py), also when pyinfra stops
  because every host failed."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import click
from paramiko import SSHException
from pyinfra.api.exceptions import PyinfraError
from pyinfra.connectors.ssh import SSHConnector

from . import summary


def _lost_host_is_an_ssh_error(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except EOFError as exc:
            raise SSHException(f"connection to {self.host.name} lost (EOFError)") from exc

    wrapper.__localcode_wrapped__ = True
    return wrapper


def install() -> None:
    quiet_libraries(verbose=logging.getLogger().level <= logging.DEBUG)
    report_each_host()
    for name in ("run_shell_command", "put_file", "get_file", "rsync"):
        method = getattr(SSHConnector, name)
        if not getattr(method, "__localcode_wrapped__", False):
            setattr(SSHConnector, name, _lost_host_is_an_ssh_error(method))


def quiet_libraries(verbose: bool = False) -> None:
    """An unreachable host is an expected failure: pyinfra and our commands report it in one line
    per host, so paramiko's own tracebacks (banner errors, EOF) stay out of the operator's way
    unless they asked for detail (-v, --debug-all)."""
    if not verbose:
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def report_each_host() -> None:
    """After pyinfra's results: what each host got (localcode/summary.py), in the terminal or in
    `--json` (key "localcode"), and in localcode-last-run.json beside the inventory. pyinfra has
    no hook after a run, so its two result printers are wrapped."""
    from pyinfra_cli import cli, prints

    if getattr(cli.print_results, "__localcode_wrapped__", False):
        return

    def finished(state) -> list:
        hosts = summary.build(state)
        inventory = str(click.get_current_context().params.get("inventory") or "")
        directory = Path(inventory).parent if inventory and not inventory.startswith("@") else Path.cwd()
        if directory.is_dir():
            summary.write(hosts, directory)
        return hosts

    def print_results(state) -> None:
        prints.print_results(state)
        click.echo("\n--> What each host got:", err=True)
        for line in summary.lines(finished(state)):
            click.echo(f"    {line}", err=True)
        click.echo(err=True)

    def print_run_json(state, dry: bool) -> None:
        if dry:
            prints.print_run_json(state, dry)
            return
        prints.print_json({"plan": prints.build_plan_json(state), "results": prints.build_results_json(state),
                           "localcode": finished(state)})

    def run_ops(state, *args, **kwargs) -> None:
        """pyinfra stops with "No hosts remaining!" when the last host fails, before its results:
        the operator of a one-host fleet would never see why. Report, then let it stop."""
        try:
            run_ops_of_pyinfra(state, *args, **kwargs)
        except PyinfraError:
            if state.active_hosts:
                raise
            if click.get_current_context().params.get("json_output"):
                print_run_json(state, dry=False)
            else:
                print_results(state)
            raise

    run_ops_of_pyinfra = cli.run_ops
    for wrapper in (print_results, print_run_json, run_ops):
        wrapper.__localcode_wrapped__ = True
    cli.print_results, cli.print_run_json, cli.run_ops = print_results, print_run_json, run_ops
