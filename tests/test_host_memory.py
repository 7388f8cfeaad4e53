"""Host buffers for translated batches: numpy-allocated rows, one device -> host copy per field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arena_adapters import host_memory
from arena_adapters.observations import select_rows
from arena_adapters.parts import Query


def make_query(num_envs: int, env_ids: list[int], device: str = "cpu") -> Query:
    ids = np.asarray(env_ids, dtype=np.int64)
    return Query(env_ids=torch.from_numpy(ids).to(device), env_ids_host=ids, device=torch.device(device),
                 num_envs=num_envs)


@pytest.mark.parametrize("shape", [(3, 4, 5), (4, 512, 1024)])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64, torch.bool, torch.bfloat16])
def test_empty_is_a_contiguous_cpu_tensor_of_the_dtype(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    buffer = host_memory.empty(shape, dtype)
    assert buffer.shape == shape and buffer.dtype == dtype and buffer.is_contiguous()
    assert buffer.device.type == "cpu"
    buffer.fill_(1)
    assert bool((buffer == 1).all())


def test_selected_rows_equal_index_select_in_env_order() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (9, 360, 640, 3), generator=generator, dtype=torch.uint8)  # 2.8 MB queried
    state = torch.randn(9, 7, generator=generator)
    query = make_query(9, [0, 4, 5, 8])
    for value in (images, state, images[..., :2], images.permute(0, 2, 1, 3), images[:, :8, :8]):
        rows = select_rows(value, query)
        torch.testing.assert_close(rows, value.index_select(0, query.env_ids), rtol=0, atol=0)
    assert select_rows(images, make_query(9, list(range(9)))) is images
    leaf = torch.randn(9, 7, requires_grad=True)
    assert select_rows(leaf, query).requires_grad


def test_to_host_shares_contiguous_cpu_memory_and_copies_the_rest_once() -> None:
    images = torch.randint(0, 256, (4, 6, 8, 3), dtype=torch.uint8)
    channels_first = images.permute(0, 3, 1, 2)
    state = torch.randn(4, 7, dtype=torch.float64)
    host_images, host_channels_first, host_state = host_memory.to_host([images, channels_first, state])
    assert np.shares_memory(host_images, images.numpy()) and np.shares_memory(host_state, state.numpy())
    assert host_channels_first.flags.c_contiguous and not np.shares_memory(host_channels_first, images.numpy())
    np.testing.assert_array_equal(host_channels_first, channels_first.numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a cuda device")
def test_cuda_fields_come_back_in_pinned_memory_with_their_values() -> None:
    images = torch.randint(0, 256, (5, 18, 32, 3), dtype=torch.uint8, device="cuda")
    state = torch.randn(5, 7, device="cuda")
    query = make_query(5, [1, 3], "cuda")
    rows = [select_rows(images, query), select_rows(state, query).permute(1, 0)]
    host = host_memory.to_host(rows)
    for array, tensor in zip(host, rows, strict=True):
        assert array.flags.c_contiguous
        np.testing.assert_array_equal(array, tensor.cpu().numpy())
        assert torch.from_numpy(array).is_pinned()
