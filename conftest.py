"""Settings for every test of the repository (core and plugins)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from arena_adapters.testing.golden import find_golden_dir


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
    """``shared/golden`` beside the repository: wire bytes recorded from the real upstream code."""
    directory = find_golden_dir(__file__)
    assert directory is not None, "shared/golden must exist beside the repository"
    return directory
