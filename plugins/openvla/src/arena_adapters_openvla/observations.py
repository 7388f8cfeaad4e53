"""Observation translators: Isaac Lab observations -> OpenVLA / OpenVLA-OFT request payloads.

One payload dict per queried env, keys in the order the upstream clients send them:

- OpenVLA: ``{"image": uint8 (H, W, 3), "instruction": str[, "unnorm_key": str]}``.
- OFT: ``{"full_image": uint8 (H, W, 3), "<wrist key>": uint8 (H, W, 3), ..., "state": float64 (D,),
  "instruction": str}``. The OFT server takes every key containing ``wrist`` as a wrist camera, in
  JSON key order, so the configured order of ``wrist_cameras`` is the camera order.

Images are resized with padding on the env device (default 224x224, as the upstream clients do),
then every field is copied to the host once for all queried envs (one synchronisation per query);
each payload holds a view of that copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from numpy.typing import NDArray

from arena_adapters.errors import ConfigError, ObservationError
from arena_adapters.host_memory import to_host
from arena_adapters.imaging import resize_with_pad
from arena_adapters.observations import lookup, require_batch, require_tensor, select_rows
from arena_adapters.parts import Observation, Query
from arena_adapters_openvla.variants import VARIANTS as VARIANTS  # re-exported

DEFAULT_IMAGE_KEY = "camera_obs.external_camera_rgb"
DEFAULT_WRIST_CAMERAS = "wrist_image=camera_obs.wrist_camera_rgb"
DEFAULT_STATE_KEYS = "policy.joint_pos,policy.gripper_pos"
DEFAULT_RESIZE = "224x224"
_STATE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def parse_size(value: Any) -> tuple[int, int] | None:
    """``"224x224"``, ``"224"``, ``224`` or ``(224, 224)`` -> ``(224, 224)``; ``"none"``/``""``/``None`` -> ``None``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "no", "off")):
        return None
    try:
        if isinstance(value, str):
            sizes = [int(part) for part in value.lower().replace(",", "x").split("x")]
        elif isinstance(value, int):
            sizes = [value]
        else:
            sizes = [int(part) for part in value]
        if len(sizes) == 1:
            sizes *= 2
        height, width = sizes
    except (TypeError, ValueError):
        raise ConfigError(f"option 'resize': expected 'HxW' (e.g. '224x224') or 'none', got {value!r}") from None
    if height < 1 or width < 1:
        raise ConfigError(f"option 'resize': sizes must be >= 1, got {value!r}")
    return height, width


def parse_paths(value: Any, option: str) -> tuple[str, ...]:
    """A comma-separated str or a list of dotted observation paths -> tuple of paths."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(item, str) for item in items):
        raise ConfigError(f"option {option!r}: expected observation paths as str, got {value!r}")
    return tuple(item.strip() for item in items if item.strip())


def parse_wrist_cameras(value: Any) -> tuple[tuple[str, str], ...]:
    """Wrist cameras as ``(wire key, observation path)`` pairs, in wire order.

    Accepts ``"wire_key=obs.path,..."`` (an entry without ``wire_key=`` uses the path's last
    component), a list of such entries, or a dict ``{wire_key: obs_path}``. Every wire key must
    contain ``wrist``: that is how the OFT server recognizes wrist cameras.
    """
    if isinstance(value, Mapping):
        entries = [f"{key}={path}" for key, path in value.items()]
    else:
        entries = list(parse_paths(value, "wrist_cameras"))
    cameras: list[tuple[str, str]] = []
    for entry in entries:
        wire_key, sep, path = entry.partition("=")
        if not sep:
            path = wire_key
            wire_key = path.replace("/", ".").rsplit(".", 1)[-1]
        wire_key, path = wire_key.strip(), path.strip()
        if "wrist" not in wire_key or not path:
            raise ConfigError(
                f"option 'wrist_cameras': entry {entry!r} needs a wire key containing 'wrist' "
                f"(the OFT server only reads such keys), e.g. 'wrist_image=camera_obs.wrist_camera_rgb'"
            )
        if wire_key in ("full_image", "state", "instruction") or wire_key in dict(cameras):
            raise ConfigError(f"option 'wrist_cameras': duplicate or reserved wire key {wire_key!r}")
        cameras.append((wire_key, path))
    return tuple(cameras)


def camera_rows(observation: Observation, path: str, query: Query, size: tuple[int, int] | None) -> NDArray[Any]:
    """The queried envs' uint8 RGB images at ``path``, resized with padding, as one host array
    ``(k, H, W, 3)`` (C-contiguous, so each row is a zero-copy payload value).

    Raises:
        ObservationError: a missing key, not uint8 ``(num_envs, H, W, 3)``, or the wrong batch size.
    """
    return to_host([camera_tensor(observation, path, query, size)])[0]


def camera_tensor(observation: Observation, path: str, query: Query, size: tuple[int, int] | None) -> torch.Tensor:
    """:func:`camera_rows` on the env device: ``(k, H, W, 3)`` uint8."""
    images = require_tensor(lookup(observation, path), path, dtypes=(torch.uint8,), shape=("num_envs", "H", "W", 3))
    require_batch(images, path, query.num_envs)
    rows = select_rows(images, query)
    if size is not None:
        rows = resize_with_pad(rows, *size)
    return rows


def state_rows(observation: Observation, paths: Sequence[str], query: Query, state_dim: int | None) -> NDArray[Any]:
    """The queried envs' proprio state: the float tensors at ``paths`` concatenated, as float64
    host array ``(k, D)`` (upstream clients send float64).

    Raises:
        ObservationError: a missing key, a non-float or non-2-D tensor, the wrong batch size, or a
            total width other than ``state_dim``.
    """
    return to_host([state_tensor(observation, paths, query, state_dim)])[0]


def state_tensor(observation: Observation, paths: Sequence[str], query: Query, state_dim: int | None) -> torch.Tensor:
    """:func:`state_rows` on the env device: ``(k, D)`` float64."""
    parts = []
    for path in paths:
        value = require_tensor(lookup(observation, path), path, dtypes=_STATE_DTYPES, shape=("num_envs", "D"))
        require_batch(value, path, query.num_envs)
        parts.append(select_rows(value, query).to(torch.float64))
    state = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    if state_dim is not None and state.shape[1] != state_dim:
        widths = ", ".join(f"{path} {int(part.shape[1])}" for path, part in zip(paths, parts, strict=True))
        raise ObservationError(
            f"observation state {'+'.join(paths)!r}: expected {state_dim} values per env (option state_dim), "
            f"got {int(state.shape[1])} ({widths})"
        )
    return state


def _instructions(query: Query) -> tuple[str, ...]:
    return query.instructions if len(query.instructions) == query.size else ("",) * query.size


class OpenVlaObservations:
    """Builds OpenVLA requests: ``{"image", "instruction"[, "unnorm_key"]}`` per queried env.

    Args:
        image_key: dotted observation path of the uint8 ``(num_envs, H, W, 3)`` camera.
        resize: ``"HxW"`` to resize with padding on the env device (default ``"224x224"``), or
            ``"none"`` to send the camera as it is (the server resizes anyway).
        unnorm_key: the dataset statistics the server un-normalizes actions with (e.g.
            ``"bridge_orig"``); left out of the request when ``None``.
    """

    def __init__(
        self, image_key: str = DEFAULT_IMAGE_KEY, resize: Any = DEFAULT_RESIZE, unnorm_key: str | None = None
    ) -> None:
        self.image_key = image_key
        self.size = parse_size(resize)
        self.unnorm_key = unnorm_key

    def translate(self, observation: Observation, query: Query) -> list[dict[str, Any]]:
        """One payload dict per queried env, in ``query.env_ids`` order."""
        (images,) = to_host([camera_tensor(observation, self.image_key, query, self.size)])
        payloads: list[dict[str, Any]] = []
        for index, instruction in enumerate(_instructions(query)):
            payload: dict[str, Any] = {"image": images[index], "instruction": instruction}
            if self.unnorm_key is not None:
                payload["unnorm_key"] = self.unnorm_key
            payloads.append(payload)
        return payloads


class OftObservations:
    """Builds OpenVLA-OFT requests: ``full_image``, wrist cameras, ``state``, ``instruction``.

    Args:
        image_key: dotted path of the main (third-person) camera, sent as ``full_image``.
        resize: as for :class:`OpenVlaObservations`; applied to every camera.
        wrist_cameras: the wrist cameras in wire order (see :func:`parse_wrist_cameras`); empty for none.
        state_keys: dotted paths of float ``(num_envs, D_i)`` tensors concatenated into ``state``
            (LIBERO 8, ALOHA 14, BRIDGE 7 values); empty to send no ``state``.
        state_dim: if set, the expected width of ``state``, checked before sending.
    """

    def __init__(
        self,
        image_key: str = DEFAULT_IMAGE_KEY,
        resize: Any = DEFAULT_RESIZE,
        wrist_cameras: Any = DEFAULT_WRIST_CAMERAS,
        state_keys: Any = DEFAULT_STATE_KEYS,
        state_dim: int | None = None,
    ) -> None:
        self.image_key = image_key
        self.size = parse_size(resize)
        self.wrist_cameras = parse_wrist_cameras(wrist_cameras)
        self.state_keys = parse_paths(state_keys, "state_keys")
        if state_dim is not None and state_dim < 1:
            raise ConfigError(f"option 'state_dim': expected an int >= 1, got {state_dim!r}")
        self.state_dim = state_dim

    def translate(self, observation: Observation, query: Query) -> list[dict[str, Any]]:
        """One payload dict per queried env, in ``query.env_ids`` order."""
        tensors = [camera_tensor(observation, path, query, self.size)
                   for path in (self.image_key, *(path for _, path in self.wrist_cameras))]
        if self.state_keys:
            tensors.append(state_tensor(observation, self.state_keys, query, self.state_dim))
        arrays = to_host(tensors)
        full = arrays[0]
        wrist_arrays = arrays[1 : 1 + len(self.wrist_cameras)]
        wrists = [(key, images) for (key, _), images in zip(self.wrist_cameras, wrist_arrays, strict=True)]
        state = arrays[-1] if self.state_keys else None
        payloads: list[dict[str, Any]] = []
        for index, instruction in enumerate(_instructions(query)):
            payload: dict[str, Any] = {"full_image": full[index]}
            for key, images in wrists:
                payload[key] = images[index]
            if state is not None:
                payload["state"] = state[index]
            payload["instruction"] = instruction
            payloads.append(payload)
        return payloads


def make_observation_translator(
    variant: str = "openvla",
    image_key: str = DEFAULT_IMAGE_KEY,
    resize: Any = DEFAULT_RESIZE,
    unnorm_key: str | None = None,
    wrist_cameras: Any = DEFAULT_WRIST_CAMERAS,
    state_keys: Any = DEFAULT_STATE_KEYS,
    state_dim: int | None = None,
) -> OpenVlaObservations | OftObservations:
    """The translator of ``variant`` (``"openvla"`` or ``"oft"``), built from the adapter options.

    Raises:
        ConfigError: an unknown variant, or ``unnorm_key`` with ``"oft"`` (the OFT server reads its
            un-normalization key from its own configuration, never from the request).
    """
    if variant == "openvla":
        return OpenVlaObservations(image_key=image_key, resize=resize, unnorm_key=unnorm_key)
    if variant == "oft":
        if unnorm_key is not None:
            raise ConfigError(
                "option 'unnorm_key' is for variant 'openvla'; an OFT server takes it from its own --unnorm_key"
            )
        return OftObservations(
            image_key=image_key, resize=resize, wrist_cameras=wrist_cameras, state_keys=state_keys, state_dim=state_dim
        )
    raise ConfigError(f"option 'variant': expected one of {list(VARIANTS)}, got {variant!r}")
