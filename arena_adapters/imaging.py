"""Batched image operations on the tensor's device, for observation translators."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_with_pad(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize channels-last images to ``(height, width)`` keeping the aspect ratio, padding with 0.

    The batched equivalent of openpi's ``image_tools.resize_with_pad`` (PIL bilinear, itself a
    replica of ``tf.image.resize_with_pad``): the same resized size and padding offsets, and
    antialiased bilinear filtering, so results agree with PIL within one intensity level.

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
    flat = images.reshape(-1, in_height, in_width, channels).permute(0, 3, 1, 2)
    resized = F.interpolate(
        flat.float(),
        size=(resized_height, resized_width),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    if images.dtype == torch.uint8:
        resized = resized.round_().clamp_(0, 255)
    out = torch.zeros(flat.shape[0], height, width, channels, dtype=images.dtype, device=images.device)
    top = max(0, int((height - resized_height) / 2))
    left = max(0, int((width - resized_width) / 2))
    out[:, top : top + resized_height, left : left + resized_width] = resized.permute(0, 2, 3, 1).to(images.dtype)
    return out.reshape(*lead, height, width, channels)
