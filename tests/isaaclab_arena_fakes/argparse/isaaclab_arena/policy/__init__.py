"""Arena's own policies; the registry imports this package lazily (and nothing outside Arena)."""

from isaaclab_arena.policy import zero_action_policy  # noqa: F401  (registers zero_action)
