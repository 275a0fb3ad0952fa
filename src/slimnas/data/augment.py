"""Standard CIFAR augmentation on uint8 batches: zero-padded random crop and horizontal flip.

The recipe of He et al., "Deep Residual Learning for Image Recognition" (arXiv 1512.03385, §4.2):
pad 4 pixels on each side with zeros, take a random 32×32 crop, flip left-right with probability
0.5. Here it runs on a whole uint8 batch at once, on whichever device the batch lives: the crops
are one advanced index into an ``unfold`` view of all windows, the flips one ``torch.where``, so
there is no per-image Python loop. Drawing the parameters (`draw_crop_flip`) is separate from
applying them (`crop_flip`), so that a loader can draw them for a global batch and apply each
rank's share.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Measured on the shared CIFAR-10 copy (JPEG quality 75, see docs/data.md): per-channel mean and
# standard deviation of the 50,000 training images, pixels scaled to [0, 1].
CIFAR10_MEAN = (0.4913, 0.4821, 0.4465)
CIFAR10_STD = (0.2452, 0.2428, 0.2606)


def draw_crop_flip(
    n: int, padding: int = 4, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw crop offsets and flips for ``n`` images, on the CPU.

    Returns:
        ``(offsets, flips)``: int64 ``[n, 2]`` (top, left) in ``[0, 2·padding]`` within the padded
        image, and bool ``[n]``. Offsets of ``padding`` and no flip leave an image unchanged.
    """
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator).bool()
    return offsets, flips


def crop_flip(
    batch: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int = 4
) -> torch.Tensor:
    """Zero-pad ``batch`` by ``padding``, crop each image at its offset, flip where asked.

    Args:
        batch: ``[N, C, H, W]`` images of any dtype (uint8 typically).
        offsets: ``[N, 2]`` (top, left) of each crop in the padded image, in ``[0, 2·padding]``.
        flips: ``[N]`` bool, which images to flip left-right after cropping.
        padding: zero border added on each side before cropping.

    Returns:
        A new ``[N, C, H, W]`` tensor of ``batch``'s dtype, on its device.
    """
    n, _, h, w = batch.shape
    offsets = offsets.to(batch.device)
    flips = flips.to(batch.device)
    padded = F.pad(batch, (padding, padding, padding, padding)) if padding else batch
    # Every h×w window of every padded image, as a view [N, C, 2p+1, 2p+1, H, W]; one advanced
    # index picks each image's window in a single copy.
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)
    crops = windows[torch.arange(n, device=batch.device), :, offsets[:, 0], offsets[:, 1]]
    return torch.where(flips[:, None, None, None], crops.flip(-1), crops)


def random_crop_flip(
    batch: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Standard CIFAR augmentation of a ``[N, C, H, W]`` batch: padded random crop + flip (p 0.5).

    The random draws come from ``generator`` (a CPU generator; the global one when None) and do
    not depend on the batch's device, so a CPU and a GPU run see the same crops and flips.
    """
    offsets, flips = draw_crop_flip(batch.shape[0], padding, generator)
    return crop_flip(batch, offsets, flips, padding)


def normalize(
    batch: torch.Tensor,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
) -> torch.Tensor:
    """Scale a uint8 ``[N, C, H, W]`` batch to [0, 1] and standardise per channel, as float32.

    ``batch`` may also be `ImageFiles` (a few images of a streamed set): they are decoded first.
    """
    if not isinstance(batch, torch.Tensor):
        batch = batch.decode()
    device = batch.device
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return batch.to(torch.float32, copy=True).div_(255.0).sub_(mean_t).div_(std_t)
