"""localcode: every host becomes a local-model Claude Code workstation.

    pyinfra inventory/team.py deploy.py          # the fleet
    pyinfra inventory/team.py deploy.py --dry    # the plan: each host's sizing and its reason

Reads as a table of contents; each step is a module of localcode/.
"""

from pyinfra import host, inventory

from localcode import ollama, plan, settings

# 1. Validate every host's data before anything is touched (a bad value stops the run).
config = settings.host_config(host, inventory)

# 2. Size the host: the best tools-capable model and the largest context that fit.
sizing = plan.size_host(host, config)

# 3. Ollama: installed or upgraded (checksum-verified), our service, loopback, the sizing's
#    environment; restarted only when something changed, then the running version checked.
ollama.install(config, sizing)
