"""`localcode plan INVENTORY`: connect to the hosts, read their hardware (one round trip
each, in parallel) and size them, without changing anything."""

from __future__ import annotations

import os

from pyinfra.api import Config, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.facts import get_facts
from pyinfra.context import ctx_inventory, ctx_state
from pyinfra_cli.inventory import make_inventory

from .facts import HardwareFact
from .plan import HostPlan, plan_host
from .settings import validate_inventory


def gather_plans(inventory_path: str) -> list[HostPlan]:
    state = State()
    state.cwd = os.getcwd()
    ctx_state.set(state)
    inventory = make_inventory(inventory_path, cwd=state.cwd)
    ctx_inventory.set(inventory)
    configs = validate_inventory([(h.name, h.data.dict()) for h in inventory], for_deploy=False)
    state.init(inventory, Config())
    try:
        connect_all(state)
        facts = get_facts(state, HardwareFact)
    finally:
        disconnect_all(state)
    plans = []
    for host in inventory:
        if host not in facts:
            plans.append(HostPlan(host.name, "?", None, error="unreachable (SSH connection failed)"))
            continue
        try:
            plans.append(plan_host(host.name, configs[host.name], facts[host]))
        except (PyinfraError, ValueError) as exc:
            plans.append(HostPlan(host.name, "?", None, error=str(exc)))
    return plans
