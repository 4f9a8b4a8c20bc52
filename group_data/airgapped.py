"""Air-gapped hosts: no internet at all. Everything comes from a bundle built on a connected
machine (`localcode bundle DIR --inventory ...`) and pushed over SSH, and Claude Code is told to
make no outside connection. Set bundle_dir (here or per host) to that directory."""

network = "airgapped"
ollama_source = "bundle"
claude_source = "bundle"
model_source = "bundle"
