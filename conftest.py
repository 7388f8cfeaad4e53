"""Settings for every test of the repository (core and plugins)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from arena_adapters.testing.golden import golden_dir_or_skip


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """Tests use small tensors: one intra-op thread avoids oversubscribing a busy 2-core machine,
    where torch's thread pool can make small ops 10-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """``shared/golden`` beside the repository (or ``$ARENA_ADAPTERS_GOLDEN_DIR``): wire bytes recorded
    from the real upstream code. Tests that need it are skipped, with the reason, where it is absent
    (a fresh clone without ``../shared``)."""
    return golden_dir_or_skip(__file__)
