"""Air-gapped hosts: no internet at all. Everything comes from a bundle built on a connected
machine (`localcode bundle`), and Claude Code is told to make no outside connection."""

network = "airgapped"
