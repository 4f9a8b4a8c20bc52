"""Put the right model on every host: pull the sizing's base model only when it is missing
(or its digest differs from a pin), render the derived model's Modelfile (num_ctx from the
sizing, sampling parameters from group_data), create it only when it is missing or differs,
and read `/api/show` back to confirm num_ctx. Optionally prune undeclared models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, FunctionCommand, operation
from pyinfra.api.exceptions import FactProcessError
from pyinfra.operations import files

from .facts import MARK, OllamaFact, _sections
from . import helpers, sources
from .bundle_index import load_index, manifest_path
from .ollama import failure
from .settings import HostConfig
from .shell import command, sh_quote
from .sizing import Decision

MODELFILES = "/usr/local/lib/localcode/models"
PULL_HELPER = helpers.path("localcode-pull")
SYNC_HELPER = helpers.path("localcode-sync-model")
LINUX_STORE = "/usr/share/ollama/.ollama/models"


@dataclass(frozen=True)
class ShownModel:
    parameters: dict[str, Any]
    context_length: int | None
    capabilities: tuple[str, ...]


def parse_parameters(text: str) -> dict[str, Any]:
    """`/api/show` parameters: lines of `name<spaces>value`, values in Go's %#v (strings quoted;
    repeated names such as `stop` become lists)."""
    params: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, _, raw = line.strip().partition(" ")
        raw = raw.strip()
        value: Any = json.loads(raw) if raw.startswith('"') else _number(raw)
        if key in params:
            params[key] = (params[key] if isinstance(params[key], list) else [params[key]]) + [value]
        else:
            params[key] = value
    return params


def _number(raw: str) -> Any:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(raw, raw)


class ShownModelsFact(FactBase):
    """`POST /api/show` for several models in one round trip; None for a missing model."""

    def default(self) -> dict:
        return {}

    def command(self, api: str, names: tuple[str, ...]) -> str:
        url = sh_quote(f"http://{api}/api/show")
        parts = []
        for name in names:
            body = sh_quote(json.dumps({"model": name}))
            parts.append(f"echo {MARK}{sh_quote(name)}; curl -s --max-time 10 -w '\\n%{{http_code}}' -X POST "
                         f"-H 'Content-Type: application/json' -d {body} {url}; echo")
        return "; ".join(parts + ["true"])

    def process(self, output: list[str]) -> dict[str, ShownModel | None]:
        shown: dict[str, ShownModel | None] = {}
        for name, lines in _sections(output).items():
            if not name:
                continue
            lines = [line for line in lines if line.strip()]
            status = lines[-1].strip() if lines else ""
            if status == "404":
                shown[name] = None
                continue
            if status != "200":
                raise FactProcessError(f"/api/show {name}: HTTP {status or 'no answer'}; raw output:\n" + "\n".join(output))
            try:
                body = json.loads("\n".join(lines[:-1]))
            except ValueError:
                raise FactProcessError(f"/api/show {name}: not JSON; raw output:\n" + "\n".join(output)) from None
            info = body.get("model_info") or {}
            ctx = next((v for k, v in info.items() if k.endswith(".context_length")), None)
            shown[name] = ShownModel(parse_parameters(body.get("parameters", "")), ctx,
                                     tuple(body.get("capabilities") or ()))
        return shown


def desired_parameters(config: HostConfig, decision: Decision) -> dict[str, Any]:
    """The derived model's parameters: num_ctx from the sizing, the rest from group_data."""
    return {"num_ctx": decision.num_ctx, **dict(config.model_parameters.items())}


def parameters_match(have: dict[str, Any], want: dict[str, Any]) -> bool:
    def norm(value: Any) -> Any:
        if isinstance(value, list):
            return [norm(v) for v in value]
        return round(float(value), 6) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    return all(norm(have.get(k)) == norm(v if not isinstance(v, tuple) else list(v)) for k, v in want.items())


def modelfile_path(name: str) -> str:
    return f"{MODELFILES}/{name.replace('/', '_').replace(':', '_')}.Modelfile"


def _stream_pull(state, host, api: str, model: str) -> bool:  # noqa: ARG001 (pyinfra passes state)
    """Run the pull with its progress lines printed live per host ("[host] 40% …")."""
    status, output = host.run_shell_command(command(PULL_HELPER, api, model), print_output=True)
    if not status:
        for line in output.stderr_lines:
            host.log(line)
    return status


@operation()
def pull(api: str, model: str, digest: str | None):
    """Pull the base model unless it is there (with the pinned digest, when one is set)."""
    state = host.get_fact(OllamaFact, api=api)
    present = {m.name: m.digest for m in state.models}
    have = present.get(model)
    pin = digest.removeprefix("sha256:") if digest else None
    if have and (pin is None or have == pin):
        host.noop(f"{model} is present (digest {have[:12]})" + (" as pinned" if pin else ""))
        return
    if state.server_version is None:
        yield from failure._inner(message=f"cannot pull {model}: no Ollama server answers at {api}")
        return
    yield FunctionCommand(_stream_pull, (api, model), {})
    if pin:
        yield command("sh", "-c", 'd=$(curl -s "http://$1/api/tags" | tr "{" "\\n" | grep "\\"name\\":\\"$2\\"" '
                      '| sed -n \'s/.*"digest":"\\([0-9a-f]*\\)".*/\\1/p\'); [ "$d" = "$3" ] || '
                      '{ echo "$2: the registry served digest ${d:-none}, pinned $3" >&2; exit 1; }',
                      "localcode", api, model, pin)


class StoreBlobsFact(FactBase):
    """The blob files in an Ollama store (names like sha256-<hex>)."""

    def default(self) -> set:
        return set()

    def command(self, store: str) -> str:
        return f"ls {sh_quote(store)}/blobs 2>/dev/null; true"

    def process(self, output: list[str]) -> set[str]:
        return {line.strip() for line in output if line.startswith("sha256-") and "partial" not in line}


@operation()
def sync(api: str, store: str, owner: str, model: str, bundle_dir: str | None, mirror_url: str | None,
         pin: str | None):
    """Put a model into the store from a bundle (pushing only the blobs the store lacks) or from
    a mirror (the host fetches them), blobs first and manifest last; no server restart."""
    present = {m.name: m.digest for m in host.get_fact(OllamaFact, api=api).models}
    incoming = f"{store.rsplit('/', 1)[0]}/localcode-incoming"
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
        have = host.get_fact(StoreBlobsFact, store=store)
        missing = [b.path for b in entry.blobs if Path(b.path).name not in have]
        yield from sources.push(bundle_dir, [entry.manifest, *missing], dest=incoming)
        yield command(SYNC_HELPER, incoming, store, owner, entry.manifest, entry.digest)
    else:
        yield command(SYNC_HELPER, mirror_url, store, owner, manifest_path(model), f"sha256:{want}" if want else "-")


@operation()
def derived_model(api: str, model: str, modelfile: str, parameters: dict, recreate):
    """Create the derived model from its Modelfile when it is missing, its parameters differ,
    or its base or Modelfile just changed; then confirm num_ctx from /api/show."""
    name = model
    shown = host.get_fact(ShownModelsFact, api=api, names=(name,)).get(name)
    if shown is not None and parameters_match(shown.parameters, parameters) and not recreate():
        host.noop(f"{name} exists with num_ctx {shown.parameters.get('num_ctx')} and the planned parameters")
        return
    yield command("env", f"OLLAMA_HOST={api}", "ollama", "create", name, "-f", modelfile)
    yield command("sh", "-c", 'n=$(curl -s -X POST -H "Content-Type: application/json" -d "$2" "http://$1/api/show" '
                  '| tr "," "\\n" | sed -n \'s/.*num_ctx *\\([0-9]*\\).*/\\1/p\' | head -1); [ "$n" = "$3" ] || '
                  '{ echo "$4: /api/show reports num_ctx ${n:-none}, planned $3" >&2; exit 1; }',
                  "localcode", api, json.dumps({"model": name}), str(parameters["num_ctx"]), name)


@operation()
def prune(api: str, keep: tuple[str, ...]):
    """Delete models the fleet's data does not declare (NixOS syncModels-style)."""
    state = host.get_fact(OllamaFact, api=api)
    extra = sorted(m.name for m in state.models if m.name not in keep)
    if not extra:
        host.noop(f"no undeclared models (keeping {', '.join(keep)})")
        return
    for name in extra:
        yield command("env", f"OLLAMA_HOST={api}", "ollama", "rm", name)


def store_location(config: HostConfig, os_name: str) -> tuple[str, str]:
    """(models directory, owner user:group) of the Ollama server's store."""
    if "OLLAMA_MODELS" in config.ollama_environment:
        store = config.ollama_environment["OLLAMA_MODELS"]
    elif os_name == "Darwin":
        store = f"/Users/{config.developer_users[0]}/.ollama/models"
    else:
        store = LINUX_STORE
    owner = f"{config.developer_users[0]}:staff" if os_name == "Darwin" else "ollama:ollama"
    return store, owner


def ensure(config: HostConfig, decision: Decision, os_name: str) -> None:
    """Base model, derived model, optional pruning: the sizing decides which."""
    if decision.model is None:
        host.noop(f"no model for this host: {decision.reason}")
        return
    api = config.ollama_host
    digest = config.model_digests.get(decision.model) or config.catalog().by_tag()[decision.model].digest
    if config.model_source == "internet":
        pulled = pull(name=f"Base model {decision.model}", api=api, model=decision.model, digest=digest)
    else:
        store, owner = store_location(config, os_name)
        pulled = sync(name=f"Base model {decision.model} ({config.model_source})", api=api, store=store,
                      owner=owner, model=decision.model, pin=digest,
                      bundle_dir=config.bundle_dir if config.model_source == "bundle" else None,
                      mirror_url=config.mirror_url if config.model_source == "mirror" else None)
    parameters = desired_parameters(config, decision)
    files.directory(name="Modelfiles directory", path=MODELFILES, user="root", group="root", mode="0755")
    path = modelfile_path(decision.name)
    modelfile = files.template(name=f"Modelfile for {decision.name}", src="templates/Modelfile.j2", dest=path,
                               user="root", group="root", mode="0644", base=decision.model,
                               parameters=parameters, decision=decision)
    derived_model(name=f"Derived model {decision.name}", api=api, model=decision.name, modelfile=path,
                  parameters=parameters, recreate=lambda: pulled.did_change() or modelfile.did_change())
    if config.prune_models:
        prune(name="Prune undeclared models", api=api,
              keep=tuple(sorted({decision.model, decision.name, *config.keep_models})))
