"""Arena-style clients: what Isaac Lab Arena's remote policies do per env step, for the end-to-end baseline.

Written here from a reading of Isaac Lab Arena (``isaaclab_arena/policy/remote_policy_base.py``,
``isaaclab_arena_openpi/policy/droid_adapter.py``, ``isaaclab_arena_gr00t/policy/
gr00t_remote_closedloop_policy.py``, ``gr00t_core.py`` and the ``ActionChunkScheduler``); no Arena
code is copied or imported (Arena is not on PyPI). Each client talks to the same reference server as
the adapter it is compared with, serving the same (``null``) policy, and has the interface the
benchmark's eval loop drives: ``step(observation) -> actions (N, D)`` on the env device,
``reset(env_ids)`` after finished envs were reset, ``close()``.

- :class:`ArenaGr00tClient` (``gr00t_remote_closedloop`` with its default ``chunk`` scheduler).
  Every step: the "hold action" (joint positions copied into an ``(N, D)`` zero tensor on the env
  device, column by column; Arena computes it for every scheduler and the chunk scheduler ignores
  it), then the scheduler: ``any()`` of the envs needing a chunk (a device -> host sync); if any does,
  one request for ALL envs: every camera and the joint positions copied whole to the host
  (``.cpu().numpy()``), state regrouped by index, the flat DROID request (``video.*`` (N, 1, H, W, 3),
  ``state.*`` (N, 1, D), the language key) serialised as GR00T's ``PolicyClient`` does (msgpack with
  ``np.save`` per array: :func:`~arena_adapters.bench.codecs.gr00t_upstream_encode`), one ZeroMQ
  REQ round trip, decoded with ``np.load`` per array, the action keys concatenated into a float64
  ``(N, H, D)`` array and moved to the env device; only the envs that needed a chunk take theirs
  (the others keep replaying theirs, so envs stay out of phase), with the scheduler's counters
  (``mask.sum().item()``: another sync). Then its gather, read-head advance, exhausted mask and the
  masked zeroing of exhausted chunks. ``reset(env_ids)`` sends the server a ``reset`` request (a
  round trip: Arena's policy calls ``client.reset()`` whenever the runner resets envs) and resets the
  scheduler rows. Left out: the ``ping`` and ``get_modality_config`` at start-up (the horizon is
  read from the first reply instead), joint-name remapping through Arena's YAML joint configs
  (here: fixed index lists), the optional image resize (the reach cameras are already DROID's
  180x320), video history (horizon 1), bilateral mirroring. The request is GR00T's flat
  (``--use-sim-policy-wrapper``) form, which the reach expert server speaks, not the nested form.
- :class:`ArenaOpenPiClient` (``RemoteChunkReplayPolicy`` with the DROID ``EmbodimentAdapter``):
  a Python loop over envs; for each env whose chunk is exhausted (or was reset), ``extract``: the
  two cameras, the joints and the gripper of that env copied to the host one tensor at a time
  (``[env_id].detach().cpu().numpy()``); ``pack_request``: ``openpi_client.image_tools.
  resize_with_pad`` to 224x224 per image, the prompt; the real ``openpi_client.
  websocket_client_policy.WebsocketClientPolicy.infer`` (PyPI ``openpi-client``: its
  ``msgpack_numpy`` and a ``websockets`` sync connection), one request at a time; the reply's
  ``actions`` checked ``(H, D)``, truncated to the horizon and copied as float32. Then one action
  per env from its cached chunk, ``np.stack`` and ``torch.from_numpy(...).to(device)``. Left out:
  the reconnect-and-retry wrapper (never taken here) and Arena's keepalive-ping override of the
  client's constructor (ping settings only).
- :class:`ArenaOpenVlaClient`: Arena has no OpenVLA remote policy; this is the same per-env loop
  as :class:`ArenaOpenPiClient` with the upstream OpenVLA-OFT client's request: the observation
  ``{"full_image", "wrist_image", "state", "instruction"}`` (images ``resize_with_pad`` to 224x224
  as Arena's adapters do; OFT's own LIBERO client resizes with a JPEG round trip and Lanczos,
  which costs more), ``requests.post`` of the ``json_numpy`` body (what ``requests.post(url,
  json=observation)`` sends after ``json_numpy.patch()``: a new ``requests`` session, so a new
  connection, per request, as upstream's module-level ``requests.post``), the reply (a JSON list of
  json_numpy arrays, one per chunk step) decoded with ``json_numpy.loads``.

The per-env host copies, the single-threaded request loop and the upstream serialisers are what
these clients cost beyond the adapter; the env, the server and the null policy are the same.
"""

from __future__ import annotations

import warnings
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch
from numpy.typing import NDArray

from arena_adapters.bench.codecs import gr00t_upstream_decode, gr00t_upstream_encode

CAMERAS = (("camera_obs", "external_camera_rgb"), ("camera_obs", "wrist_camera_rgb"))
"""The reach env's two cameras, in the order the DROID requests name them (exterior, wrist)."""
OPENPI_IMAGE_SIZE = 224


def _numpy(tensor: torch.Tensor) -> NDArray[Any]:
    """``tensor.detach().cpu().numpy()``: the host copy Arena's helpers make (a no-op on cpu)."""
    return tensor.detach().cpu().numpy()


def _env_ids(env_ids: NDArray[np.int64] | torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(env_ids, dtype=torch.long).to(device)


# --------------------------------------------------------------------------------------- GR00T

class ArenaGr00tClient:
    """Isaac Lab Arena's ``gr00t_remote_closedloop`` policy with the ``chunk`` scheduler (see the
    module docstring for what it does and leaves out).

    Args:
        endpoint: the reference server's ``tcp://host:port``.
        num_envs: envs in the batch.
        device: the env device (actions are returned there; the scheduler state lives there).
        execute_steps: actions replayed per chunk (Arena's ``action_chunk_length``).
        instruction: the language instruction sent with every request.
        timeout_s: receive/send timeout of the socket.
    """

    ACTION_KEYS = ("action.joint_position", "action.gripper_position")
    STATE_INDEX = {"joint_position": [0, 1, 2, 3, 4, 5, 6], "gripper_position": [7]}
    """State groups as indices into ``[joint_pos (7), gripper_pos (1)]`` (Arena: joint-name YAMLs)."""

    def __init__(self, endpoint: str, num_envs: int, device: str | torch.device, execute_steps: int,
                 instruction: str, timeout_s: float = 300.0) -> None:
        import zmq

        self.num_envs, self.execute_steps, self.instruction = num_envs, execute_steps, instruction
        self.device = torch.device(device)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.REQ)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
        self._socket.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
        self._socket.connect(endpoint)
        self.action_dim = len(self.STATE_INDEX["joint_position"]) + len(self.STATE_INDEX["gripper_position"])
        self.chunk: torch.Tensor | None = None
        self.float_index = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self.current_index = torch.zeros(num_envs, dtype=torch.int32, device=self.device)
        self.needs_chunk = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        self.fetches = 0
        self.envs_needed = 0
        self.per_env_fetches = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.requests = 0

    def _call(self, endpoint: str, data: dict[str, Any]) -> Any:
        self._socket.send(gr00t_upstream_encode({"endpoint": endpoint, "data": data}))
        reply = gr00t_upstream_decode(self._socket.recv())
        self.requests += 1
        if isinstance(reply, dict) and "error" in reply:
            raise RuntimeError(f"GR00T server error on {endpoint!r}: {reply['error']}")
        return reply

    def _hold_action(self, observation: dict[str, Any]) -> torch.Tensor:
        state = torch.cat([observation["policy"]["joint_pos"], observation["policy"]["gripper_pos"]], dim=1)
        state = state.to(device=self.device, dtype=torch.float)
        hold = torch.zeros((self.num_envs, self.action_dim), dtype=torch.float, device=self.device)
        for column in range(self.action_dim):
            hold[:, column] = state[:, column]
        return hold

    def _fetch(self, observation: dict[str, Any]) -> torch.Tensor:
        images = [_numpy(observation[group][key]) for group, key in CAMERAS]
        joints = np.concatenate([_numpy(observation["policy"]["joint_pos"]),
                                 _numpy(observation["policy"]["gripper_pos"])], axis=1)
        n = self.num_envs
        request: dict[str, Any] = {
            "video.exterior_image_1_left": images[0].reshape(n, 1, *images[0].shape[1:]),
            "video.wrist_image_left": images[1].reshape(n, 1, *images[1].shape[1:]),
        }
        for name, index in self.STATE_INDEX.items():
            request[f"state.{name}"] = joints[:, index].reshape(n, 1, -1)
        request["annotation.language.language_instruction"] = [self.instruction] * n
        action, _info = self._call("get_action", {"observation": request, "options": None})
        chunk = np.concatenate([np.asarray(action[key], dtype=np.float64) for key in self.ACTION_KEYS], axis=2)
        return torch.from_numpy(chunk).to(self.device)

    def step(self, observation: dict[str, Any]) -> torch.Tensor:
        """One action per env (see the class docstring)."""
        self._hold_action(observation)
        if self.needs_chunk.any():
            new_chunk = self._fetch(observation)
            if self.chunk is None:
                self.chunk = torch.zeros((self.num_envs, new_chunk.shape[1], self.action_dim), device=self.device)
            mask = self.needs_chunk  # the same tensor, cleared below: the counters count nothing, as in Arena
            self.chunk[mask] = new_chunk[mask].to(self.chunk.dtype)
            self.float_index[mask] = 0.0
            self.needs_chunk[mask] = False
            self.fetches += 1
            self.envs_needed += int(mask.sum().item())
            self.per_env_fetches[mask] += 1
        assert self.chunk is not None
        waypoint = torch.floor(self.float_index).to(torch.long).clamp_(0, self.chunk.shape[1] - 1)
        action = self.chunk[torch.arange(self.num_envs, device=self.device), waypoint]
        self.float_index += 1.0
        self.needs_chunk = self.float_index >= self.execute_steps
        next_index = (waypoint + 1).to(self.current_index.dtype)
        next_index[self.needs_chunk] = -1
        self.current_index = next_index
        self.chunk[self.needs_chunk] = 0.0
        return action

    def reset(self, env_ids: NDArray[np.int64] | torch.Tensor) -> None:
        """A ``reset`` round trip to the server, then the scheduler rows of ``env_ids``."""
        self._call("reset", {"options": None})
        ids = _env_ids(env_ids, self.device)
        if self.chunk is not None:
            self.chunk[ids] = 0.0
        self.current_index[ids] = -1
        self.float_index[ids] = 0.0
        self.needs_chunk[ids] = True

    def close(self) -> None:
        """Close the socket (linger 0) and its context."""
        self._socket.close(linger=0)
        self._context.term()


# ------------------------------------------------------------------------------- per-env replay

class _PerEnvChunkReplay:
    """Arena's ``RemoteChunkReplayPolicy`` loop: one request per env whose chunk is exhausted, one
    after another; subclasses ``extract``, ``pack_request`` and ``infer`` (see the module docstring)."""

    actions_key = "actions"

    def __init__(self, num_envs: int, device: str | torch.device, execute_steps: int, instruction: str,
                 action_dim: int = 8) -> None:
        self.num_envs, self.horizon, self.instruction = num_envs, execute_steps, instruction
        self.device, self.action_dim = torch.device(device), action_dim
        self.chunks: list[NDArray[np.float32] | None] = [None] * num_envs
        self.next_steps = [0] * num_envs
        self.requests = 0

    def extract(self, observation: dict[str, Any], env_id: int) -> dict[str, NDArray[Any]]:
        """One env's tensors, each copied to the host on its own."""
        cameras, state = observation["camera_obs"], observation["policy"]
        return {
            "exterior_image": _numpy(cameras["external_camera_rgb"][env_id]),
            "wrist_image": _numpy(cameras["wrist_camera_rgb"][env_id]),
            "joint_position": _numpy(state["joint_pos"][env_id]),
            "gripper_position": _numpy(state["gripper_pos"][env_id]),
        }

    def pack_request(self, extracted: dict[str, NDArray[Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def infer(self, request: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _fetch(self, observation: dict[str, Any], env_id: int) -> NDArray[np.float32]:
        response = self.infer(self.pack_request(self.extract(observation, env_id)))
        self.requests += 1
        chunk = np.asarray(response[self.actions_key] if self.actions_key else response)
        if chunk.ndim != 2 or chunk.shape[1] != self.action_dim or chunk.shape[0] < self.horizon:
            raise RuntimeError(f"expected actions of shape (>= {self.horizon}, {self.action_dim}), got {chunk.shape}")
        return chunk[: self.horizon].astype(np.float32, copy=True)

    def step(self, observation: dict[str, Any]) -> torch.Tensor:
        """One action per env, requesting the chunks of the envs that need one, env by env."""
        actions = []
        for env_id in range(self.num_envs):
            chunk = self.chunks[env_id]
            if chunk is None or self.next_steps[env_id] >= self.horizon:
                chunk = self.chunks[env_id] = self._fetch(observation, env_id)
                self.next_steps[env_id] = 0
            actions.append(chunk[self.next_steps[env_id]])
            self.next_steps[env_id] += 1
        return torch.from_numpy(np.stack(actions)).to(dtype=torch.float32, device=self.device)

    def reset(self, env_ids: NDArray[np.int64] | torch.Tensor) -> None:
        """Forget the chunks of ``env_ids``."""
        for env_id in torch.as_tensor(env_ids).reshape(-1).tolist():
            self.chunks[env_id] = None
            self.next_steps[env_id] = 0

    def close(self) -> None:
        """Nothing to release."""


class ArenaOpenPiClient(_PerEnvChunkReplay):
    """Isaac Lab Arena's ``RemoteChunkReplayPolicy`` with the DROID adapter, through the real
    ``openpi_client.websocket_client_policy.WebsocketClientPolicy`` (see the module docstring).

    Args:
        endpoint: the reference server's ``ws://host:port``.
        num_envs, device, execute_steps, instruction: as :class:`ArenaGr00tClient`.
    """

    def __init__(self, endpoint: str, num_envs: int, device: str | torch.device, execute_steps: int,
                 instruction: str) -> None:
        from openpi_client import image_tools, websocket_client_policy

        super().__init__(num_envs, device, execute_steps, instruction)
        address = urlsplit(endpoint)
        self._resize = image_tools.resize_with_pad
        with warnings.catch_warnings():  # websockets >= 17.1 deprecates how openpi-client 0.1.2 connects
            warnings.simplefilter("ignore", DeprecationWarning)
            self._client = websocket_client_policy.WebsocketClientPolicy(host=address.hostname or "127.0.0.1",
                                                                         port=address.port)

    def pack_request(self, extracted: dict[str, NDArray[Any]]) -> dict[str, Any]:
        size = OPENPI_IMAGE_SIZE
        return {
            "observation/exterior_image_1_left": self._resize(extracted["exterior_image"], size, size),
            "observation/wrist_image_left": self._resize(extracted["wrist_image"], size, size),
            "observation/joint_position": extracted["joint_position"],
            "observation/gripper_position": extracted["gripper_position"],
            "prompt": self.instruction,
        }

    def infer(self, request: dict[str, Any]) -> Any:
        return self._client.infer(request)

    def close(self) -> None:
        """Close the websocket."""
        connection = getattr(self._client, "_ws", None)
        if connection is not None:
            connection.close()


class ArenaOpenVlaClient(_PerEnvChunkReplay):
    """The per-env replay loop with the upstream OpenVLA-OFT client's request (``requests.post`` of
    a ``json_numpy`` body; see the module docstring).

    Args:
        endpoint: the reference server's ``http://host:port`` (``/act`` is appended).
        num_envs, device, execute_steps, instruction: as :class:`ArenaGr00tClient`.
        timeout_s: the HTTP timeout.
    """

    actions_key = ""

    def __init__(self, endpoint: str, num_envs: int, device: str | torch.device, execute_steps: int,
                 instruction: str, timeout_s: float = 300.0) -> None:
        import json_numpy
        import requests
        from openpi_client import image_tools

        super().__init__(num_envs, device, execute_steps, instruction)
        self._url = endpoint.rstrip("/") + "/act"
        self._json, self._requests, self._timeout = json_numpy, requests, timeout_s
        self._resize = image_tools.resize_with_pad

    def pack_request(self, extracted: dict[str, NDArray[Any]]) -> dict[str, Any]:
        size = OPENPI_IMAGE_SIZE
        return {
            "full_image": self._resize(extracted["exterior_image"], size, size),
            "wrist_image": self._resize(extracted["wrist_image"], size, size),
            "state": np.concatenate([extracted["joint_position"], extracted["gripper_position"]]).astype(np.float64),
            "instruction": self.instruction,
        }

    def infer(self, request: dict[str, Any]) -> Any:
        response = self._requests.post(self._url, data=self._json.dumps(request).encode("utf-8"),
                                       headers={"Content-Type": "application/json"}, timeout=self._timeout)
        response.raise_for_status()
        reply = self._json.loads(response.text)
        if isinstance(reply, str):
            raise RuntimeError(f"OpenVLA server replied {reply!r} to the Arena-style request")
        return reply


def arena_client(adapter: str, endpoint: str, num_envs: int, device: str | torch.device, execute_steps: int,
                 instruction: str) -> ArenaGr00tClient | _PerEnvChunkReplay:
    """The Arena-style client for ``adapter`` (``gr00t``, ``openpi`` or ``openvla``).

    Raises:
        ImportError: a library the client needs (pyzmq; openpi-client; json-numpy, requests) is missing.
        KeyError: an unknown adapter.
    """
    clients: dict[str, Any] = {"gr00t": ArenaGr00tClient, "openpi": ArenaOpenPiClient, "openvla": ArenaOpenVlaClient}
    return clients[adapter](endpoint, num_envs, device, execute_steps, instruction)  # type: ignore[no-any-return]


ARENA_BASELINES = {
    "gr00t": "Arena-style gr00t_remote_closedloop: all envs re-queried in one batch when any is due, "
             "per-step hold action and scheduler syncs, a reset round trip per reset",
    "openpi": "Arena-style RemoteChunkReplayPolicy: per-env host copies, resize_with_pad, "
              "openpi_client WebsocketClientPolicy, one request after another",
    "openvla": "Arena-style per-env loop: per-env host copies, resize_with_pad, requests.post + json_numpy, "
               "one request after another",
}
