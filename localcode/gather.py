"""Read-only fleet commands (`localcode plan INVENTORY`, `bundle --inventory`, `doctor`): connect
to the hosts of an inventory and read facts (in parallel, one round trip per fact), changing
nothing."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.facts import get_fact
from pyinfra.context import ctx_host, ctx_inventory, ctx_state
from pyinfra_cli.inventory import make_inventory

from .facts import HardwareFact
from .plan import HostPlan, plan_host
from .settings import HostConfig, validate_inventory


def loaded(inventory_path: str) -> tuple[State, Inventory]:
    """The inventory as `pyinfra` loads it (group_data from the working directory), unconnected."""
    state = State()
    state.cwd = os.getcwd()
    if state.cwd not in sys.path:  # as `pyinfra` does: inventories import modules beside them
        sys.path.insert(0, state.cwd)
    ctx_state.set(state)
    inventory = make_inventory(inventory_path, cwd=state.cwd)
    ctx_inventory.set(inventory)
    return state, inventory


@contextmanager
def connected(inventory_path: str) -> Iterator[tuple[State, Inventory, dict[str, HostConfig]]]:
    """The inventory loaded and validated (every host, before any connection), then connected."""
    state, inventory = loaded(inventory_path)
    configs = validate_inventory([(h.name, h.data.dict()) for h in inventory], for_deploy=False)
    state.init(inventory, Config())
    try:
        try:
            connect_all(state)
        except PyinfraError:
            pass  # every host unreachable: each is reported as such, not as a traceback
        yield state, inventory, configs
    finally:
        disconnect_all(state)


def per_host(state: State, inventory: Inventory, fact, kwargs_for) -> dict:
    """One fact from every connected host in parallel, with per-host arguments."""
    def one(host):
        with ctx_host.use(host):
            return get_fact(state, host, fact, kwargs=kwargs_for(host))

    greenlets = {host: state.pool.spawn(one, host) for host in state.inventory.get_active_hosts()}
    return {host: greenlet.get() for host, greenlet in greenlets.items()}


def plans(state: State, inventory: Inventory, configs: dict[str, HostConfig]) -> dict[str, HostPlan]:
    facts = per_host(state, inventory, HardwareFact, lambda host: {"users": configs[host.name].developer_users})
    out = {}
    for host in inventory:
        if host not in facts:
            out[host.name] = HostPlan(host.name, "?", None, error="unreachable (SSH connection failed)")
            continue
        try:
            out[host.name] = plan_host(host.name, configs[host.name], facts[host])
        except (PyinfraError, ValueError) as exc:
            out[host.name] = HostPlan(host.name, "?", None, error=str(exc))
    return out


def gather_fleet(inventory_path: str) -> tuple[dict[str, HostConfig], list[HostPlan]]:
    """Every host's validated config and its sizing plan: `plan` shows the plans, `bundle`
    carries the models they chose and the releases the configs pin."""
    with connected(inventory_path) as (state, inventory, configs):
        return configs, list(plans(state, inventory, configs).values())
