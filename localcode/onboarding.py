"""Onboarding one machine: `pyinfra @local deploy.py` run by its developer (not root).
System steps go through sudo, and the invoking user is the developer user."""

from __future__ import annotations

from .settings import HostConfig


def system_arguments(login: str) -> dict[str, bool]:
    """Global arguments for system-level operations: sudo unless we already are root."""
    return {} if login == "root" else {"_sudo": True}


def with_invoking_developer(config: HostConfig, login: str) -> HostConfig:
    """A developer onboarding their own machine is its developer user, unless data names one."""
    if config.developer_users or login == "root" or not login:
        return config
    return config.model_copy(update={"developer_users": (login,)})
