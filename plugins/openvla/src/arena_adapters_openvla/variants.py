"""The two server variants this plugin speaks to (no torch: the reference server imports it)."""

from __future__ import annotations

VARIANTS = ("openvla", "oft")
"""``openvla``: one action per request from one image; ``oft``: OpenVLA-OFT's action chunks."""
