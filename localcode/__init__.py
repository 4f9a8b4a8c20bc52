"""localcode: turn developer machines into local-model Claude Code workstations."""
