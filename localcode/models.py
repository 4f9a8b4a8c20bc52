"""Put the right model on every host: pull the sizing's base model only when it is missing
(or its digest differs from a pin), render the derived model's Modelfile (num_ctx from the
sizing, sampling parameters from group_data), create it only when it is missing or differs,
and read `/api/show` back to confirm num_ctx. Optionally prune undeclared models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, FunctionCommand, operation

from . import helper_scripts, sources, summary
from .bundle_index import load_index, manifest_path
from .facts import OllamaState, ShownModel, parse_parameters
from .ollama.macos import MacServer
from .ops import api_json, failure, streamed
from .settings import HostConfig
from .shell import command, sh_quote
from .sizing import Decision
from .rendering import render
from .userfiles import ensure_file

MODELFILES = "/usr/local/lib/localcode/models"
PULL_HELPER = helper_scripts.path("localcode-pull")
SYNC_HELPER = helper_scripts.path("localcode-sync-model")
LINUX_STORE = "/usr/share/ollama/.ollama/models"


def desired_parameters(config: HostConfig, decision: Decision) -> dict[str, Any]:
    """The derived model's parameters: num_ctx from the sizing, the rest from group_data."""
    return {"num_ctx": decision.num_ctx, **dict(config.model_parameters.items())}


def parameters_match(have: dict[str, Any], want: dict[str, Any]) -> bool:
    def norm(value: Any) -> Any:
        if isinstance(value, list):
            return [norm(v) for v in value]
        return round(float(value), 6) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    return all(norm(have.get(k)) == norm(v if not isinstance(v, tuple) else list(v)) for k, v in want.items())


def ollama_program(state: OllamaState) -> str:
    """The ollama that runs `create` and `rm`: on macOS the LaunchAgent's own by its absolute path
    (SSH's PATH there has neither /usr/local/bin nor Homebrew), elsewhere the one on PATH."""
    return state.program if isinstance(state, MacServer) else "ollama"


def modelfile_path(name: str) -> str:
    return f"{MODELFILES}/{name.replace('/', '_').replace(':', '_')}.Modelfile"


@operation()
def pull(api: str, model: str, digest: str | None, state: OllamaState, expected_bytes: int = 0):
    """Pull the base model unless it is there (with the pinned digest, when one is set), as
    observed when the deploy started."""
    present = {m.name: m.digest for m in state.models}
    have = present.get(model)
    pin = digest.removeprefix("sha256:") if digest else None
    if have and (pin is None or have == pin):
        host.noop(f"{model} is present (digest {have[:12]})" + (" as pinned" if pin else ""))
        return
    yield streamed(PULL_HELPER, api, model, str(expected_bytes))
    if pin:
        yield FunctionCommand(_check_digest, (api, model, pin), {})


def _check_digest(state, host, api: str, model: str, pin: str) -> bool:  # noqa: ARG001
    """The pulled model's digest, as /api/tags lists it, is the pinned one."""
    tags = api_json(host, api, "/api/tags")
    listed = tags.get("models") if isinstance(tags, dict) else None
    digest = next((m.get("digest") for m in listed or () if isinstance(m, dict) and m.get("name") == model), None)
    if digest == pin:
        return True
    host.log(f"{model}: the registry served digest {digest or 'none'}, pinned {pin}")
    return False


class StoreBlobsFact(FactBase):
    """The blob files in an Ollama store (regular files named sha256-<hex>; links are not
    followed), listed as the store's owner (user:group) when read as root: the store is that
    account's tree, and a link planted there must not make root read where the owner could not."""

    def default(self) -> set:
        return set()

    def command(self, store: str, owner: str) -> str:
        user, _, group = owner.partition(":")
        find = 'find "$b/" -maxdepth 1 -type f -name "sha256-*"'
        return (f"b={sh_quote(store + '/blobs')} u={sh_quote(user)} g={sh_quote(group or user)}; cd / && "
                f'if [ "$(id -u)" != 0 ]; then {find}; '
                f'elif [ "$(uname -s)" = Darwin ]; then /usr/bin/sudo -n -u "$u" -- {find}; '
                'elif command -v setpriv >/dev/null 2>&1; then '
                f'setpriv --reuid="$u" --regid="$g" --clear-groups -- {find}; '
                f'else runuser -u "$u" -- {find}; fi 2>/dev/null; true')

    def process(self, output: list[str]) -> set[str]:
        names = (line.strip().rsplit("/", 1)[-1] for line in output)
        return {name for name in names if name.startswith("sha256-") and "partial" not in name}


@operation()
def sync(store: str, owner: str, model: str, bundle_dir: str | None, mirror_url: str | None,
         pin: str | None, state: OllamaState, os_name: str):
    """Put a model into the store from a bundle (pushing only the blobs the store lacks) or from
    a mirror (the host fetches them), blobs first and manifest last; no server restart. Files
    land and are verified in root's own staging directory and are written into the store by
    its owner (user:group): the store is that account's tree, and root never writes there."""
    present = {m.name: m.digest for m in state.models}
    staging = sources.MODEL_STAGING
    if bundle_dir:
        entry = load_index(Path(bundle_dir)).model(model)
        if entry is None:
            yield from failure._inner(message=f"{model} is not in the bundle {bundle_dir}: rebuild it with "
                                              f"`localcode bundle {bundle_dir} --model {model}`")
            return
        want = entry.digest.removeprefix("sha256:")
    else:
        want = pin.removeprefix("sha256:") if pin else None
    if model in present and (want is None or present[model] == want):
        host.noop(f"{model} is in the store (digest {present[model][:12]})")
        return
    if bundle_dir:
        have = host.get_fact(StoreBlobsFact, store=store, owner=owner)
        missing = [b.path for b in entry.blobs if Path(b.path).name not in have]
        yield command(SYNC_HELPER, "stage", staging)
        yield from sources.push(bundle_dir, [entry.manifest, *missing], dest=staging, os_name=os_name)
        yield streamed(SYNC_HELPER, "install", staging, store, owner, entry.manifest, entry.digest)
    else:
        yield streamed(SYNC_HELPER, "install", staging, store, owner, manifest_path(model),
                       f"sha256:{want}" if want else "-", mirror_url)


@operation()
def derived_model(api: str, model: str, modelfile: str, parameters: dict, shown: ShownModel | None, recreate,
                  program: str):
    """Create the derived model from its Modelfile when it is missing, its parameters differ
    (as observed when the deploy started), or its base or Modelfile just changed; then confirm
    num_ctx from /api/show."""
    name = model
    if shown is not None and parameters_match(shown.parameters, parameters) and not recreate():
        host.noop(f"{name} exists with num_ctx {shown_value(shown.parameters.get('num_ctx'))} and the planned "
                  "parameters")
        return
    yield command("env", f"OLLAMA_HOST={api}", program, "create", name, "-f", modelfile)
    yield FunctionCommand(_confirm_parameters, (api, name, parameters), {})


def _confirm_parameters(state, host, api: str, name: str, parameters: dict) -> bool:  # noqa: ARG001
    """The created model's parameters, read back from /api/show, are the planned ones. Parsed
    as numbers, not digits: Ollama prints num_ctx 1048576 as `1.048576e+06`."""
    answer = api_json(host, api, "/api/show", {"model": name})
    shown = answer if isinstance(answer, dict) else {"error": "no JSON answer"}
    try:
        have = parse_parameters(shown.get("parameters") or "")
    except (AttributeError, ValueError):
        have = {}
    wrong = [k for k, v in parameters.items() if not parameters_match(have, {k: v})]
    if not wrong:
        return True
    host.log(f"{name}: /api/show reports " + (shown.get("error") or ", ".join(
        f"{k} {shown_value(have.get(k, 'none'))}, planned {parameters[k]}" for k in wrong)))
    return False


def shown_value(value: Any) -> str:
    """A parameter as read back, for messages: `1.048576e+06` parses as 1048576.0, shown 1048576."""
    return str(int(value) if isinstance(value, float) and value.is_integer() else value)


@operation()
def prune(api: str, keep: tuple[str, ...], state: OllamaState):
    """Delete models the fleet's data does not declare (NixOS syncModels-style)."""
    extra = sorted(m.name for m in state.models if m.name not in keep)
    if not extra:
        host.noop(f"no undeclared models (keeping {', '.join(keep)})")
        return
    for name in extra:
        yield command("env", f"OLLAMA_HOST={api}", ollama_program(state), "rm", name)


def store_location(config: HostConfig, os_name: str) -> tuple[str, str]:
    """(models directory, owner user:group) of the Ollama server's store: the owner is the
    account the server runs as, and the only one that writes inside the store."""
    if "OLLAMA_MODELS" in config.ollama_environment:
        store = config.ollama_environment["OLLAMA_MODELS"]
    elif os_name == "Darwin":
        store = f"/Users/{config.developer_users[0]}/.ollama/models"
    else:
        store = LINUX_STORE
    owner = f"{config.developer_users[0]}:staff" if os_name == "Darwin" else "ollama:ollama"
    return store, owner


def managed_paths(decision: Decision) -> list[str]:
    """The derived model's Modelfile (kept on the host: it documents the model)."""
    return [modelfile_path(decision.name)] if decision.model else []


def ensure(config: HostConfig, decision: Decision, os_name: str, observed: dict, state: OllamaState) -> None:
    """Base model, derived model, optional pruning: the sizing decides which."""
    if decision.model is None:
        host.noop(f"no model for this host: {decision.reason}")
        return
    if isinstance(state, MacServer) and state.waiting:
        host.noop(f"models: {state.waiting}; deploy again then for {decision.model} and {decision.name}")
        return
    api = config.ollama_host
    host.log(f"models: base {decision.model}, derived {decision.name} (num_ctx {decision.num_ctx})")
    entry = config.catalog().by_tag()[decision.model]
    digest = config.model_digests.get(decision.model) or entry.digest
    if config.model_source == "internet":
        pulled = pull(name="Base model", api=api, model=decision.model, digest=digest, state=state,
                      expected_bytes=entry.download_bytes)
    else:
        store, owner = store_location(config, os_name)
        pulled = sync(name="Base model (from the bundle or mirror)", store=store,
                      owner=owner, model=decision.model, pin=digest, state=state, os_name=os_name,
                      bundle_dir=config.bundle_dir if config.model_source == "bundle" else None,
                      mirror_url=config.mirror_url if config.model_source == "mirror" else None)
    summary.change(host, f"{'pulled' if config.model_source == 'internet' else 'synced'} {decision.model}", pulled)
    parameters = desired_parameters(config, decision)
    path = modelfile_path(decision.name)
    content = render("Modelfile.j2", base=decision.model, parameters=parameters, decision=decision)
    modelfile = ensure_file(name="Modelfile of the derived model", path=path, content=content, mode="0644",
                            observed=observed.get(path))
    derived = derived_model(name="Derived model", api=api, model=decision.name, modelfile=path,
                            parameters=parameters, shown=state.shown.get(decision.name),
                            recreate=lambda: pulled.did_change() or modelfile.did_change(),
                            program=ollama_program(state))
    summary.change(host, f"created {decision.name} (num_ctx {decision.num_ctx})", derived)
    if config.prune_models:
        prune(name="Prune undeclared models", api=api, state=state,
              keep=tuple(sorted({decision.model, decision.name, *config.keep_models})))
