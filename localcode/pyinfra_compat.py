"""Work around a pyinfra 3.10 gap: when a host vanishes mid-run (power cut, network gone),
paramiko re-raises its transport's EOFError on the next command, and pyinfra, which catches
only OSError/SSHException/TimeoutError around commands and facts, aborts *every* host's run.
Here that EOFError becomes an SSHException, so only the vanished host fails and the summary
names it. Re-check on every pyinfra upgrade."""

from __future__ import annotations

import functools
import logging

from paramiko import SSHException
from pyinfra.connectors.ssh import SSHConnector


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
