"""Settings for every test of the repository (core and plugins)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """Tests use small tensors: one intra-op thread avoids oversubscribing a busy 2-core machine,
    where torch's thread pool can make small ops 10-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
