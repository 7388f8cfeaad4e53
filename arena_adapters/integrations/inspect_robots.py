"""Inspect Robots policies backed by arena-adapters: any installed adapter, by name.

`Inspect Robots <https://pypi.org/project/inspect-robots/>`_ evaluates a *policy* (``act(observation)
-> ActionChunk``) on an *embodiment*. This module makes every installed adapter such a policy, so a
served GR00T, OpenPI or OpenVLA model (or a third party's) runs under Inspect Robots in its native
protocol. Install with ``pip install 'arena-adapters[inspect]'``; the policies are registered under
the ``inspect_robots.policies`` entry-point group::

    inspect_robots.eval(task, "arena-gr00t", embodiment)              # by name, default endpoint
    inspect-robots run ... --policy arena-gr00t -P endpoint=tcp://127.0.0.1:5555
    inspect-robots run ... --policy arena -P adapter=mybot -P endpoint=...   # any adapter

or build one in code: ``ArenaAdapterPolicy("gr00t", endpoint=..., execute_steps=8)``. A third-party
plugin may publish its own name with ``mybot_policy = policy_factory("mybot", {"mybot": "pip install
mybot"})`` and an entry point ``arena-mybot = "mybot.inspect:mybot_policy"``.

How the data maps (one env, ``num_envs=1``):

- Observation: each image ``images[NAME]`` (``(H, W, 3)`` uint8) becomes ``camera_obs.NAME`` and each
  state vector ``state[KEY]`` becomes ``policy.KEY``, with a leading batch axis of 1: the Isaac Lab
  Arena layout the adapters' translators read. ``observation_map`` renames entries
  (``{"images.exterior": "camera_obs.external_camera_rgb"}``). The instruction is sent as the task
  instruction.
- Actions: one ``act`` asks the server once and returns the adapter's horizon as an
  :class:`~inspect_robots.ActionChunk`: ``execute_steps`` actions (or the whole chunk), executed
  open loop by Inspect Robots.
- Action space: ``action_dim`` if given, else the embodiment's (adopted in ``bind``); a server
  chunk of another width is an :class:`~arena_adapters.errors.ActionError` naming both.
- Errors: a server that cannot be reached surfaces as a ``ConnectionError`` caused by the typed
  :class:`~arena_adapters.errors.TransportError`, so Inspect Robots adds its hint with
  :attr:`ArenaAdapterPolicy.server_url` and :attr:`ArenaAdapterPolicy.remedy`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from inspect_robots import Action, ActionChunk, Box, Observation, PolicyBase, PolicyConfig, PolicyInfo, Scene
from inspect_robots.embodiment import EmbodimentInfo

from arena_adapters.errors import ActionError, ConfigError, ObservationError, TransportError
from arena_adapters.layouts import ActionLayout, check_layouts
from arena_adapters.plugins import FIRST_PARTY_DISTRIBUTIONS, PluginRegistry, default_registry
from arena_adapters.policy import Policy, load_policy

NAME_PREFIX = "arena-"
"""Inspect Robots names of the adapters: ``arena-<adapter>``."""

IMAGE_GROUP = "camera_obs"
STATE_GROUP = "policy"


class ArenaAdapterPolicy(PolicyBase):
    """An Inspect Robots policy that runs arena-adapters adapter ``adapter`` for one env.

    Args:
        adapter: the adapter's name (``arena-adapters list``).
        name: the Inspect Robots name (default ``arena-<adapter>``).
        action_dim: the width of the actions; ``None`` adopts the embodiment's action space.
        observation_map: ``{"images.NAME" | "state.KEY": "dotted.path"}`` renames; other entries go
            to ``camera_obs.NAME`` / ``policy.KEY``.
        device: where the observation tensors are built (the adapter's env device).
        registry: the plugin registry (default: the process-wide one).
        options: the adapter's options (``endpoint``, ``execute_steps``, ``timeout``, ...; see
            ``arena-adapters info NAME``). Nothing connects until the first :meth:`act`.

    Raises:
        UnknownAdapterError: no such adapter (the message says how to install a first-party one).
        ConfigError: a bad option, or a scheduling strategy other than open-loop replay.
    """

    def __init__(
        self,
        adapter: str,
        *,
        name: str | None = None,
        action_dim: int | None = None,
        observation_map: Mapping[str, str] | None = None,
        device: str = "cpu",
        registry: PluginRegistry | None = None,
        **options: Any,
    ) -> None:
        if options.get("strategy", "replay") != "replay" or options.get("prefetch_steps"):
            raise ConfigError(
                "Inspect Robots executes each chunk open loop: options 'strategy' (other than 'replay') and "
                "'prefetch_steps' do not apply"
            )
        if action_dim is not None and action_dim < 1:
            raise ConfigError(f"option 'action_dim': expected an int >= 1, got {action_dim!r}")
        self.adapter = adapter
        self._registry = registry or default_registry()
        self._endpoint = options.get("endpoint")
        self._observation_map = _checked_map(observation_map or {})
        self._device = torch.device(device)
        self.policy: Policy = load_policy(adapter, registry=self._registry, num_envs=1, device=device, **options)
        execute_steps = options.get("execute_steps", self._registry.adapter(adapter).defaults.get("execute_steps"))
        self.config = PolicyConfig(action_horizon=int(execute_steps or 1))
        self._fixed_width = action_dim is not None
        self.info = PolicyInfo(name=name or NAME_PREFIX + adapter, action_space=Box((action_dim or 0,)))

    # ------------------------------------------------------------------- Inspect Robots hooks

    def bind(self, embodiment_info: EmbodimentInfo) -> None:
        """Adopt the embodiment's action space unless ``action_dim`` was given, after checking the
        adapter's declared action layout against it (before any motion).

        Raises:
            ConfigError: the declared layout does not fit the embodiment's action space.
        """
        space = self.info.action_space if self._fixed_width else embodiment_info.action_space
        shape = getattr(space, "shape", None)
        if shape:
            check_layouts(self.policy.action_layout, ActionLayout.of_width(int(shape[-1])),
                          adapter=self.adapter, environment=type(embodiment_info).__name__)
        if not self._fixed_width:
            self.info = PolicyInfo(name=self.info.name, action_space=embodiment_info.action_space,
                                   observation_space=self.info.observation_space)

    def reset(self, scene: Scene) -> None:
        """Start a new episode: drop the stored chunk and tell the server where the protocol can."""
        self.policy.set_instruction(scene.instruction or "")
        try:
            self.policy.reset()
        except TransportError as exc:
            raise ConnectionError(str(exc)) from exc

    def act(self, observation: Observation) -> ActionChunk:
        """Ask the server once; return the adapter's horizon of actions as an ``ActionChunk``."""
        if observation.instruction and observation.instruction != self.policy.instruction:
            self.policy.set_instruction(observation.instruction)
        env_observation = self.env_observation(observation)
        latencies = self.policy.stats.latency_count
        try:
            rows = [self.policy.get_action(env_observation)]
            assert self.policy.scheduler is not None
            rows += [self.policy.get_action(env_observation) for _ in range(int(self.policy.scheduler.remaining()[0]))]
        except TransportError as exc:  # Inspect Robots hints at server_url/remedy for connection failures
            raise ConnectionError(str(exc)) from exc
        actions = torch.cat(rows).to("cpu", torch.float64).numpy()
        self._check_width(actions.shape[1])
        if self.config.action_horizon != len(actions):
            self.config = PolicyConfig(action_horizon=len(actions))
        measured = self.policy.stats.latencies_since(latencies)
        return ActionChunk(
            actions=[Action(data=row) for row in actions],
            inference_latency_s=sum(measured) if measured else None,
            meta={"adapter": self.adapter},
        )

    def close(self) -> None:
        """Release the adapter's connection. Idempotent."""
        self.policy.close()

    # ------------------------------------------------------------------- error hints

    @property
    def server_url(self) -> str | None:
        """The policy server's address, for Inspect Robots' connection hint."""
        endpoint = getattr(self.policy.transport, "endpoint", None) or self._endpoint
        return None if endpoint is None else str(endpoint)

    @property
    def remedy(self) -> str:
        """What to do when the server cannot be reached."""
        return (
            f"start the {self.adapter} policy server (for a test, its reference server: "
            f"'arena-adapters serve {self.adapter}') and pass its address as -P endpoint=...; "
            f"'arena-adapters ping {self.adapter} --endpoint ADDRESS' checks it"
        )

    # ------------------------------------------------------------------- translation

    def env_observation(self, observation: Observation) -> dict[str, Any]:
        """The Isaac Lab style observation (batch of one) for an Inspect Robots observation."""
        tree: dict[str, Any] = {}
        for group, source, entries in (
            ("images", IMAGE_GROUP, observation.images),
            ("state", STATE_GROUP, observation.state),
        ):
            for key, value in entries.items():
                path = self._observation_map.get(f"{group}.{key}", f"{source}.{key}")
                _put(tree, path, self._tensor(f"{group}.{key}", value))
        return tree

    def _tensor(self, key: str, value: Any) -> torch.Tensor:
        array = np.asarray(value)
        if array.dtype == object or array.dtype.kind not in "biuf":
            raise ObservationError(f"observation {key!r}: expected a numeric array, got dtype {array.dtype}")
        if array.dtype.kind == "f" and array.dtype != np.float32:
            array = array.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0).to(self._device)

    def _check_width(self, width: int) -> None:
        expected = self.info.action_space.dim
        if expected and width != expected:
            raise ActionError(
                f"adapter {self.adapter!r} returned {width}-D actions, but the action space is {expected}-D; "
                "configure the server (or the adapter's action options) for this embodiment, or pass "
                f"action_dim={width} for an embodiment of that width"
            )


def _checked_map(mapping: Mapping[str, str]) -> dict[str, str]:
    for key, path in mapping.items():
        group = key.partition(".")[0]
        if group not in ("images", "state") or "." not in key or not isinstance(path, str) or not path:
            raise ConfigError(
                f"option 'observation_map': expected {{'images.NAME' or 'state.KEY': 'dotted.path'}}, "
                f"got {key!r}: {path!r}"
            )
    return dict(mapping)


def _put(tree: dict[str, Any], path: str, value: torch.Tensor) -> None:
    *groups, leaf = path.split(".")
    node = tree
    for group in groups:
        node = node.setdefault(group, {})
        if not isinstance(node, dict):
            raise ConfigError(f"option 'observation_map': {path!r} goes through a leaf of another entry")
    node[leaf] = value


class PolicyFactory:
    """An Inspect Robots policy factory for one adapter, with its ``RUNTIME_REQUIREMENTS``.

    ``factory(**kwargs)`` builds :class:`ArenaAdapterPolicy` for the adapter; Inspect Robots'
    preflight reads :attr:`RUNTIME_REQUIREMENTS` (module -> the command that installs it).
    """

    def __init__(self, adapter: str, requirements: Mapping[str, str] | None = None) -> None:
        self.adapter = adapter
        self.__name__ = NAME_PREFIX + adapter
        self.RUNTIME_REQUIREMENTS: dict[str, str] = dict(requirements or {})

    def __call__(self, **kwargs: Any) -> ArenaAdapterPolicy:
        return ArenaAdapterPolicy(self.adapter, **kwargs)

    def __repr__(self) -> str:
        return f"PolicyFactory({self.adapter!r})"


def policy_factory(adapter: str, requirements: Mapping[str, str] | None = None) -> PolicyFactory:
    """The factory to publish for ``adapter`` under the ``inspect_robots.policies`` group.

    Args:
        adapter: the adapter name.
        requirements: module -> install command, checked by Inspect Robots before a run; a
            first-party adapter's plugin is filled in.
    """
    needed = dict(requirements or {})
    distribution = FIRST_PARTY_DISTRIBUTIONS.get(adapter)
    if distribution is not None:
        needed.setdefault(distribution.replace("-", "_"), f"pip install 'arena-adapters[{adapter}]'")
    return PolicyFactory(adapter, needed)


def arena_policy(adapter: str, **kwargs: Any) -> ArenaAdapterPolicy:
    """The generic factory (Inspect Robots name ``arena``): any installed adapter, named by ``adapter``."""
    return ArenaAdapterPolicy(adapter, **kwargs)


arena_policy.RUNTIME_REQUIREMENTS = {"arena_adapters": "pip install 'arena-adapters[inspect]'"}  # type: ignore[attr-defined]

gr00t_policy = policy_factory("gr00t")
openpi_policy = policy_factory("openpi")
openvla_policy = policy_factory("openvla")

FIRST_PARTY_FACTORIES: Mapping[str, Callable[..., ArenaAdapterPolicy]] = {
    factory.__name__: factory for factory in (gr00t_policy, openpi_policy, openvla_policy)
}
"""The first-party factories by Inspect Robots name (as registered in the core's entry points)."""
