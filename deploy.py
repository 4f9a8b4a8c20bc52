"""localcode: every host becomes a local-model Claude Code workstation.

    pyinfra inventory/team.py deploy.py          # the fleet
    pyinfra inventory/team.py deploy.py --dry    # the plan: each host's sizing and its reason
    ./onboard                                    # this machine, from a clone (localcode/onboarding.py)

Reads as a table of contents; each step is a module of localcode/.
"""

from pyinfra import host, inventory

from localcode import (claude, helper_scripts, models, ollama, onboarding, ops, plan, pull_setup, settings,
                       userfiles, wiring)

# 1. Validate every host's data before anything is touched (a bad value stops the run).
config = settings.host_config(host, inventory)

# 2. Size the host: the best tools-capable model and the largest context that fit. A host whose
#    hardware cannot be read (a broken GPU tool, say) fails here, alone; the others go on.
host_plan = plan.size_host(host, config)
if host_plan.error is not None:
    ops.failure(name="Hardware facts", message=f"{host.name}: {host_plan.error}")
else:
    config = onboarding.with_invoking_developer(config, host_plan.facts.login)

    # The files we own or edit on this host (helpers, unit files, Modelfile, Claude Code's managed
    # settings, the developers' rc and settings files), observed in one round trip.
    owned = userfiles.observe(helper_scripts.managed_paths() + ollama.managed_paths(host_plan.facts.os)
                              + models.managed_paths(host_plan.decision) + claude.managed_paths(host_plan.facts.os)
                              + pull_setup.managed_paths(host_plan.facts.os),
                              wiring.candidate_paths(config, host_plan.facts.accounts), host_plan.facts.os,
                              host_plan.facts.login)

    with host.arguments(**onboarding.system_arguments(host_plan.facts.login)):
        # Our helper scripts (verified downloads, pulls with progress, atomic user-file writes).
        helper_scripts.install(owned)

        # 3. Ollama: installed or upgraded (checksum-verified), our service, loopback, the sizing's
        #    environment; restarted only when something changed, then the running version checked.
        server = ollama.install(config, host_plan, owned)

        # 4. Models: the sizing's base model (pulled only when missing or not the pinned digest) and
        #    the derived model whose Modelfile fixes num_ctx, confirmed through /api/show.
        models.ensure(config, host_plan.decision, host_plan.facts.os, owned, server)

        # 5. Claude Code: the pinned release, verified against its manifest, never self-updating.
        claude.install(config, host_plan.facts, owned)

        # 6. Wiring, per developer user: the alias in the login shell's rc file, project settings,
        #    and on air-gapped hosts plain `claude` on the local model.
        wiring.wire(config, host_plan.decision, host_plan.facts, owned)

        # 7. Pull mode (pull_interval): the toolkit, the team configuration and a timer, so the
        #    host fetches the configuration and deploys itself; unset, nothing of it is left.
        pull_setup.setup(config, host_plan.facts.os, owned)
