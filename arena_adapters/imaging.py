"""Batched image operations on the tensor's device, for observation translators."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from arena_adapters import host_memory


def resize_with_pad(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize channels-last images to ``(height, width)`` keeping the aspect ratio, padding with 0.

    The batched equivalent of openpi's ``image_tools.resize_with_pad`` (PIL bilinear, itself a
    replica of ``tf.image.resize_with_pad``): the same resized size and padding offsets, and
    antialiased bilinear filtering. uint8 images on the CPU take torch's uint8 path (Pillow's
    fixed-point resampling, ported; no float copy), which agrees with PIL exactly for all but a
    few values, and those within one intensity level; other devices and dtypes filter in float and
    agree with PIL within one level.

    Args:
        images: ``(..., H, W, C)`` uint8 or float tensor, on any device.
        height, width: the output size.

    Returns:
        ``(..., height, width, C)`` of the input dtype on the input device (the input itself
        when it already has that size).
    """
    in_height, in_width = int(images.shape[-3]), int(images.shape[-2])
    if (in_height, in_width) == (height, width):
        return images
    ratio = max(in_width / width, in_height / height)
    resized_height, resized_width = int(in_height / ratio), int(in_width / ratio)
    lead = images.shape[:-3]
    channels = images.shape[-1]
    # (N, C, H, W) view of channels-last memory: what the uint8 path reads without a copy
    flat = images.reshape(-1, in_height, in_width, channels).permute(0, 3, 1, 2)
    resized = _antialiased_bilinear(flat, resized_height, resized_width).permute(0, 2, 3, 1)
    top = max(0, int((height - resized_height) / 2))
    left = max(0, int((width - resized_width) / 2))
    shape = (flat.shape[0], height, width, channels)
    if images.device.type == "cpu":
        out = host_memory.empty(shape, images.dtype)
    else:
        out = torch.empty(shape, dtype=images.dtype, device=images.device)
    bottom, right = top + resized_height, left + resized_width
    out[:, :top] = 0
    out[:, bottom:] = 0
    out[:, top:bottom, :left] = 0
    out[:, top:bottom, right:] = 0
    out[:, top:bottom, left:right] = resized
    return out.reshape(*lead, height, width, channels)


def _antialiased_bilinear(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, height, width)`` of the same dtype, antialiased bilinear."""
    if images.dtype == torch.uint8 and images.device.type == "cpu":
        return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    resized = F.interpolate(images.float(), size=(height, width), mode="bilinear", align_corners=False,
                            antialias=True)
    if images.dtype == torch.uint8:
        resized = resized.round_().clamp_(0, 255)
    return resized.to(images.dtype)
