"""Batched resize-with-pad against PIL's bilinear resize, the reference the protocols use."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from arena_adapters.imaging import resize_with_pad


def _pil_resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    in_height, in_width = image.shape[:2]
    ratio = max(in_width / width, in_height / height)
    size = (int(in_width / ratio), int(in_height / ratio))
    resized = np.asarray(Image.fromarray(image).resize(size, resample=Image.BILINEAR))
    out = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = int((height - size[1]) / 2), int((width - size[0]) / 2)
    out[top : top + size[1], left : left + size[0]] = resized
    return out


def _scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth gradients plus sharp-edged blocks and noise: the cases a resize gets wrong."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1)
    for _ in range(6):
        top, left = rng.integers(0, height - 8), rng.integers(0, width - 8)
        image[top : top + rng.integers(4, 40), left : left + rng.integers(4, 40)] = rng.integers(0, 256, 3)
    image = image + rng.integers(-20, 21, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("in_size", "out_size"),
    [((480, 640), (224, 224)), ((720, 1280), (180, 320)), ((180, 320), (224, 224)), ((100, 90), (224, 224)), ((224, 300), (224, 224))],
)
def test_uint8_matches_pil_but_for_a_few_values_within_one_level(in_size: tuple[int, int],
                                                                 out_size: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(in_size))
    images = np.stack([_scene(rng, *in_size) for _ in range(3)])
    ours = resize_with_pad(torch.from_numpy(images), *out_size).numpy()
    assert ours.shape == (3, *out_size, 3) and ours.dtype == np.uint8
    for ours_one, image in zip(ours, images, strict=True):
        difference = np.abs(ours_one.astype(int) - _pil_resize_with_pad(image, *out_size).astype(int))
        assert difference.max() <= 1
        assert np.count_nonzero(difference) <= 0.02 * difference.size  # the float path: 8-25 %


@pytest.mark.parametrize(("in_size", "out_size"), [((480, 640), (224, 224)), ((180, 320), (224, 224))])
def test_the_float_path_of_other_devices_matches_pil_within_one_level(in_size: tuple[int, int],
                                                                       out_size: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(in_size))
    images = np.stack([_scene(rng, *in_size) for _ in range(3)])
    ours = resize_with_pad(torch.from_numpy(images).double(), *out_size).round().to(torch.uint8).numpy()
    for ours_one, image in zip(ours, images, strict=True):
        difference = np.abs(ours_one.astype(int) - _pil_resize_with_pad(image, *out_size).astype(int))
        assert difference.max() <= 1


def test_same_size_is_returned_unchanged_and_leading_axes_are_kept() -> None:
    images = torch.randint(0, 255, (2, 5, 224, 224, 3), dtype=torch.uint8)
    assert resize_with_pad(images, 224, 224) is images
    assert resize_with_pad(images, 112, 64).shape == (2, 5, 112, 64, 3)


def test_float_images_stay_float() -> None:
    images = torch.rand(2, 64, 32, 3)
    out = resize_with_pad(images, 32, 32)
    assert out.dtype == torch.float32
    assert out[:, :, :8].abs().sum() == 0 and out[:, :, 24:].abs().sum() == 0
