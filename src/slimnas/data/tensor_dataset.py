"""A map-style dataset over images and labels already in memory as tensors."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from slimnas.errors import ConfigError


def check_images_labels(images: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise `ConfigError` unless ``images`` is ``[N, C, H, W]`` uint8 and ``labels`` is ``[N]``."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ConfigError(
            f"images must be a uint8 [N, C, H, W] tensor, got {images.dtype} "
            f"{list(images.shape)}; load them with slimnas.data.load_cifar or load_image_folder"
        )
    if labels.dim() != 1 or len(labels) != len(images) or labels.is_floating_point():
        raise ConfigError(
            f"labels must be an integer [N] tensor with N = {len(images)} (one per image), got "
            f"{labels.dtype} {list(labels.shape)}"
        )


class ImageTensorDataset(Dataset):
    """Images (uint8 ``[N, C, H, W]``) and labels (``[N]``) as a ``torch.utils.data.Dataset``.

    Args:
        images: uint8 ``[N, C, H, W]``.
        labels: integer ``[N]``.
        transform: applied to each uint8 ``[C, H, W]`` image on access; None returns it as is.
            For whole-batch augmentation use `BatchLoader`, which is much faster.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        check_images_labels(images, labels)
        self.images = images
        self.labels = labels.long()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]

    @property
    def num_classes(self) -> int:
        """One more than the largest label."""
        return int(self.labels.max()) + 1 if len(self.labels) else 0
