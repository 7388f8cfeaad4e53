"""Isaac Lab Arena integration, older ("argparse") generation: kept so ``--policy_type
arena_adapters.isaaclab.AdapterPolicy`` keeps working.

The code lives in :mod:`arena_adapters.integrations.isaaclab_legacy`; the typed-config Arena's
policies are in :mod:`arena_adapters.integrations.isaaclab_typed`.
"""

from arena_adapters.integrations.isaaclab_legacy import (
    AdapterPolicy,
    AdapterPolicyConfig,
    StandalonePolicyBase,
    arena_policy_base,
    register_with_arena,
)

__all__ = ["AdapterPolicy", "AdapterPolicyConfig", "StandalonePolicyBase", "arena_policy_base",
           "register_with_arena"]
