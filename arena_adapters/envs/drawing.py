"""Cheap batched drawing of small shapes into many images at once, in torch.

A :class:`Canvas` holds ``N`` channels-last uint8 images in one flat buffer with one spare pixel at
the end. A shape is painted in every image at once by computing the pixels of a small patch around
each image's shape centre; pixels outside the image or outside the shape are redirected to the
spare pixel, so one ``index_put_`` paints everything with no boolean selection (no device sync) and
the cost grows with the shape area, not with the image size.
"""

from __future__ import annotations

import math

import torch


class Canvas:
    """``num_images`` images of ``height x width`` RGB drawn over a background image, frame by frame.

    Frames are drawn into ``buffers`` persistent buffers used in turn (allocating fresh memory for
    every frame costs more than drawing it): the images of a frame stay valid until ``buffers - 1``
    further frames have been started.

    Args:
        background: ``(height, width, 3)`` uint8 on the target device.
        num_images: images per frame.
        buffers: how many frames stay valid at once.
    """

    def __init__(self, background: torch.Tensor, num_images: int, buffers: int = 2) -> None:
        self.height, self.width = int(background.shape[0]), int(background.shape[1])
        self.num_images = num_images
        self.device = background.device
        self._background = background.reshape(1, -1).expand(num_images, -1)
        pixels = num_images * self.height * self.width
        self._buffers = [torch.empty(pixels + 1, 3, dtype=torch.uint8, device=self.device) for _ in range(buffers)]
        self._spare = pixels
        self._current = 0
        self._flat = self._buffers[0]
        self._image_offsets = torch.arange(num_images, device=self.device) * (self.height * self.width)

    def new_frame(self) -> torch.Tensor:
        """Start a frame in the next buffer, filled with the background; return its images."""
        self._current = (self._current + 1) % len(self._buffers)
        self._flat = self._buffers[self._current]
        self._flat[: self._spare].view(self.num_images, -1).copy_(self._background)
        return self.images

    @property
    def images(self) -> torch.Tensor:
        """The current frame: ``(num_images, height, width, 3)`` uint8 (a view of its buffer)."""
        return self._flat[: self._spare].view(self.num_images, self.height, self.width, 3)

    def _paint(
        self,
        xs: torch.Tensor,
        ys: torch.Tensor,
        inside_shape: torch.Tensor,
        color: tuple[int, int, int],
        visible: torch.Tensor | None,
    ) -> None:
        """Paint the pixels ``(ys[n, i], xs[n, j])`` of image ``n`` where ``inside_shape[n, i, j]``.

        ``xs`` is ``(N, S)``, ``ys`` is ``(N, R)``, ``inside_shape`` is ``(N, R, S)`` (it is modified).
        """
        keep = inside_shape
        keep &= ((xs >= 0) & (xs < self.width)).unsqueeze(1)
        keep &= ((ys >= 0) & (ys < self.height)).unsqueeze(2)
        if visible is not None:
            keep &= visible.view(-1, 1, 1)
        rows = ys * self.width + self._image_offsets.unsqueeze(1)
        index = rows.unsqueeze(2) + xs.unsqueeze(1)
        index.masked_fill_(~keep, self._spare)
        flat_index = index.view(-1, 1).expand(-1, 3)
        value = torch.tensor(color, dtype=torch.uint8, device=self.device).expand_as(flat_index)
        self._flat.scatter_(0, flat_index, value)

    def disks(
        self,
        centers: torch.Tensor,
        radius: float,
        color: tuple[int, int, int],
        *,
        inner_radius: float = 0.0,
        visible: torch.Tensor | None = None,
    ) -> None:
        """Paint one disk (or ring, when ``inner_radius > 0``) per image.

        Args:
            centers: ``(N, 2)`` float pixel coordinates ``(x, y)``; pixel ``(i, j)`` covers
                ``[j, j+1) x [i, i+1)``.
            radius, inner_radius: in pixels.
            color: RGB.
            visible: optional ``(N,)`` bool; images where it is False are left alone.
        """
        reach = math.ceil(radius) + 1
        span = torch.arange(-reach, reach + 1, device=self.device)
        base = centers.floor().long()
        xs = base[:, :1] + span
        ys = base[:, 1:] + span
        dx = xs.to(centers.dtype) + 0.5 - centers[:, :1]
        dy = ys.to(centers.dtype) + 0.5 - centers[:, 1:]
        squared = (dy * dy).unsqueeze(2) + (dx * dx).unsqueeze(1)
        inside = squared <= radius * radius
        if inner_radius > 0:
            inside &= squared >= inner_radius * inner_radius
        self._paint(xs, ys, inside, color, visible)

    def rectangles(
        self,
        corners: torch.Tensor,
        height: int,
        width: int,
        color: tuple[int, int, int],
        *,
        visible: torch.Tensor | None = None,
    ) -> None:
        """Paint one axis-aligned ``height x width`` pixel rectangle per image.

        Args:
            corners: ``(N, 2)`` float pixel coordinates ``(x, y)`` of the top-left corner (rounded).
        """
        base = corners.round().long()
        xs = base[:, :1] + torch.arange(width, device=self.device)
        ys = base[:, 1:] + torch.arange(height, device=self.device)
        inside = torch.ones(len(base), height, width, dtype=torch.bool, device=self.device)
        self._paint(xs, ys, inside, color, visible)
