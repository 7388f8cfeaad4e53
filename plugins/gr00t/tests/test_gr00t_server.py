"""The reference server's handling of request arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from arena_adapters_gr00t.codec import encode
from arena_adapters_gr00t.server import ReferenceServer


@pytest.mark.parametrize("writable_arrays", [True, False])
def test_writable_arrays_chooses_copies_or_read_only_views_of_the_request(writable_arrays: bool) -> None:
    seen: list[np.ndarray[Any, Any]] = []

    class Recording:
        def get_action(self, observation: dict[str, Any], options: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
            seen.append(observation["video.cam"])
            return {"action.x": np.zeros((1, 2, 1), np.float32)}, {}

        def get_modality_config(self) -> dict[str, Any]:
            return {}

        def reset(self, options: Any = None) -> dict[str, Any]:
            return {}

    server = ReferenceServer(Recording(), "127.0.0.1", 0, format="nested", writable_arrays=writable_arrays)
    image = np.arange(48, dtype=np.uint8).reshape(1, 1, 4, 4, 3)
    frame = encode({"endpoint": "get_action", "data": {"observation": {"video.cam": image}}})
    server.handle(frame)
    assert seen[0].flags.writeable is writable_arrays
    np.testing.assert_array_equal(seen[0], image)
