"""GR00T's ``ModalityConfig``: what a policy server expects per modality (``video``, ``state``,
``action``, ``language``), as the ``get_modality_config`` endpoint describes it.

On the wire a config is a map with a marker key and a payload:

- N1.6: ``{"__ModalityConfig_class__": true, "as_json": {fields}}``;
- the upstream DROID example's copy of the serializer reads and writes ``"as_dict"`` instead;
- N1.7-era copies use the marker ``"__ModalityConfig__"``;
- N1.5: ``"as_json"`` is a JSON *string* (pydantic ``model_dump_json``) with only
  ``delta_indices`` and ``modality_keys``, whose keys carry the modality prefix (``"video.ego_view"``).

:class:`ModalityConfig` reads all of these and remembers the form it came in, so that encoding it
again gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from arena_adapters.transport.limits import DecodeLimits

MARKER_N16 = "__ModalityConfig_class__"
MARKER_N17 = "__ModalityConfig__"
MARKERS = (MARKER_N16, MARKER_N17)
PAYLOAD_KEYS = ("as_json", "as_dict")
MODALITIES = ("video", "state", "action", "language")

_FIELDS = ("delta_indices", "modality_keys", "sin_cos_embedding_keys", "mean_std_embedding_keys", "action_configs")


@dataclass(frozen=True)
class ActionConfig:
    """How one action key is represented (enum *names*, as on the wire)."""

    rep: str
    type: str
    format: str
    state_key: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"rep": self.rep, "type": self.type, "format": self.format, "state_key": self.state_key}


@dataclass(frozen=True)
class WireForm:
    """How a config was (or will be) written: marker key, payload key, payload as a JSON string."""

    marker: str = MARKER_N16
    payload_key: str = "as_json"
    json_string: bool = False


N15_FORM = WireForm(MARKER_N16, "as_json", json_string=True)


@dataclass(frozen=True)
class ModalityConfig:
    """One modality's config: which keys, at which time offsets.

    Attributes:
        delta_indices: time offsets; their count is the horizon ``T`` of the modality.
        modality_keys: the key names (cameras, state groups, action groups, the language key).
        sin_cos_embedding_keys, mean_std_embedding_keys: normalisation hints (unused by clients).
        action_configs: per action key, its representation (``None`` for non-action modalities).
        extra: fields this client does not know, kept in order (newer servers).
        form: how the config is written on the wire (not part of equality).
    """

    delta_indices: tuple[int, ...]
    modality_keys: tuple[str, ...]
    sin_cos_embedding_keys: tuple[str, ...] | None = None
    mean_std_embedding_keys: tuple[str, ...] | None = None
    action_configs: tuple[ActionConfig, ...] | None = None
    extra: tuple[tuple[str, Any], ...] = ()
    form: WireForm = field(default=WireForm(), compare=False, repr=False)

    @property
    def horizon(self) -> int:
        """``len(delta_indices)``: the ``T`` axis length of this modality's arrays."""
        return len(self.delta_indices)

    def short_keys(self, modality: str) -> tuple[str, ...]:
        """``modality_keys`` without an N1.5-style ``"<modality>."`` prefix."""
        prefix = modality + "."
        return tuple(k[len(prefix):] if modality != "language" and k.startswith(prefix) else k
                     for k in self.modality_keys)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any], form: WireForm = WireForm()) -> ModalityConfig:
        """Build from the payload map (``as_json``/``as_dict`` content)."""
        if "delta_indices" not in fields or "modality_keys" not in fields:
            raise ValueError(f"a ModalityConfig needs delta_indices and modality_keys, got keys {list(fields)}")
        actions = fields.get("action_configs")
        return cls(
            delta_indices=tuple(int(i) for i in fields["delta_indices"]),
            modality_keys=tuple(str(k) for k in fields["modality_keys"]),
            sin_cos_embedding_keys=_optional_strs(fields.get("sin_cos_embedding_keys")),
            mean_std_embedding_keys=_optional_strs(fields.get("mean_std_embedding_keys")),
            action_configs=None if actions is None else tuple(_action_config(a) for a in actions),
            extra=tuple((k, v) for k, v in fields.items() if k not in _FIELDS),
            form=form,
        )

    @classmethod
    def from_wire(cls, wire: Mapping[Any, Any], limits: DecodeLimits | None = None) -> ModalityConfig:
        """Build from a wire map carrying one of the markers (str or bin keys); a JSON-string
        payload (N1.5) is read within ``limits`` (length, integer digits, depth).

        Raises:
            ValueError: no payload, or a payload without the required fields.
            ProtocolError: a JSON payload over the limits.
        """
        marker = next((m for m in MARKERS if m in wire or m.encode() in wire), MARKER_N16)
        for key in PAYLOAD_KEYS:
            for candidate in (key, key.encode()):
                if candidate in wire:
                    payload = wire[candidate]
                    json_string = isinstance(payload, (str, bytes))
                    if json_string:
                        payload = _bounded_json(payload, limits or DecodeLimits())
                    if not isinstance(payload, Mapping):
                        raise ValueError(f"ModalityConfig payload must be a map, got {type(payload).__name__}")
                    return cls.from_fields(payload, WireForm(marker, key, json_string))
        raise ValueError(f"ModalityConfig map without as_json/as_dict payload: keys {list(wire)}")

    def fields(self) -> dict[str, Any]:
        """The payload map, in upstream's field order."""
        out: dict[str, Any] = {
            "delta_indices": list(self.delta_indices),
            "modality_keys": list(self.modality_keys),
            "sin_cos_embedding_keys": _optional_list(self.sin_cos_embedding_keys),
            "mean_std_embedding_keys": _optional_list(self.mean_std_embedding_keys),
            "action_configs": None if self.action_configs is None else [a.to_wire() for a in self.action_configs],
        }
        out.update(self.extra)
        return out

    def to_wire(self) -> dict[str, Any]:
        """The wire map in this config's :attr:`form` (N1.5: a compact JSON string of the two fields)."""
        if self.form.json_string:
            text = json.dumps(
                {"delta_indices": list(self.delta_indices), "modality_keys": list(self.modality_keys)},
                separators=(",", ":"),
            )
            return {self.form.marker: True, self.form.payload_key: text}
        return {self.form.marker: True, self.form.payload_key: self.fields()}


def _bounded_json(text: str | bytes, limits: DecodeLimits) -> Any:
    """``json.loads`` of a peer's text, refused over ``max_header_bytes`` long, with integer literals
    over ``max_int_digits``, non-finite numbers, or nesting deeper than ``max_depth``."""
    limits.check_header(len(text), "ModalityConfig JSON")
    depth = deepest = 0
    for char in text if isinstance(text, str) else text.decode("utf-8", "replace"):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    limits.check_depth(deepest, "ModalityConfig JSON")

    def parse_int(literal: str) -> int:
        limits.check_int_digits(len(literal.lstrip("-")), "ModalityConfig JSON integer")
        return int(literal)

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"non-finite number {name} in ModalityConfig JSON")

    return json.loads(text, parse_int=parse_int, parse_constant=refuse_constant)


def _optional_strs(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


def _optional_list(value: tuple[str, ...] | None) -> list[str] | None:
    return None if value is None else list(value)


def _action_config(value: Any) -> ActionConfig:
    if isinstance(value, ActionConfig):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"an action config must be a map, got {value!r}")
    return ActionConfig(str(value["rep"]), str(value["type"]), str(value["format"]), value.get("state_key"))


def is_modality_config_map(value: Mapping[Any, Any]) -> bool:
    """True when a decoded map carries a ModalityConfig marker (str or bin key)."""
    return any(m in value or m.encode() in value for m in MARKERS)


def as_modality_configs(value: Any) -> dict[str, ModalityConfig]:
    """Read a ``get_modality_config`` reply (or any transport's metadata) as ``{modality: config}``.

    Accepts :class:`ModalityConfig` values, marker maps and plain field maps; other entries are ignored.
    """
    configs: dict[str, ModalityConfig] = {}
    if not isinstance(value, Mapping):
        return configs
    for name, item in value.items():
        if isinstance(item, ModalityConfig):
            configs[str(name)] = item
        elif isinstance(item, Mapping):
            try:
                configs[str(name)] = (
                    ModalityConfig.from_wire(item) if is_modality_config_map(item) else ModalityConfig.from_fields(item)
                )
            except (ValueError, KeyError, TypeError):
                continue
    return configs
