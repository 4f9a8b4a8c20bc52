"""Onboarding one machine: `pyinfra @local deploy.py` run by its developer (not root).
System steps go through sudo, and the invoking user is the developer user."""

from __future__ import annotations

from pyinfra.facts.server import User

from .settings import HostConfig


def is_root(host) -> bool:
    return host.get_fact(User) == "root"


def system_arguments(host) -> dict[str, bool]:
    """Global arguments for system-level operations: sudo unless we already are root."""
    return {} if is_root(host) else {"_sudo": True}


def with_invoking_developer(config: HostConfig, host) -> HostConfig:
    """A developer onboarding their own machine is its developer user, unless data names one."""
    if config.developer_users or is_root(host):
        return config
    return config.model_copy(update={"developer_users": (host.get_fact(User),)})
