"""Seeded, class-balanced held-out split of a training set, for search and model selection.

Searches score candidate architectures on data the weights were not trained on and that is not
the test set (DESIGN.md, "Honest evaluation"): this split carves it out of the training data,
the same share of every class, so that the held-out accuracy is not skewed by class frequency.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from slimnas.errors import ConfigError


def class_balanced_split(
    labels: torch.Tensor | np.ndarray | Sequence[int], heldout: float | int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices ``0 … N−1`` into kept and held-out sets, class by class.

    Args:
        labels: integer class label of each example.
        heldout: a float in [0, 1] is the share of each class to hold out (rounded half up per
            class); an int is the number of examples to hold out from each class.
        seed: the same seed and labels always give the same split.

    Returns:
        ``(train_indices, heldout_indices)``: sorted int64 tensors, disjoint, together covering
        every index once.

    Raises:
        ConfigError: ``heldout`` is out of range or a class has fewer examples than asked for.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().reshape(-1)
    else:
        labels = torch.as_tensor(np.asarray(labels)).reshape(-1)
    if labels.is_floating_point():
        raise ConfigError(f"labels must be integers, got {labels.dtype}; pass class indices")
    if isinstance(heldout, bool) or not isinstance(heldout, (int, float)):
        raise ConfigError(
            f"heldout must be a share in [0, 1] or a count per class, got {heldout!r}"
        )
    if isinstance(heldout, float) and not 0.0 <= heldout <= 1.0:
        raise ConfigError(f"heldout share {heldout} is outside [0, 1]; use e.g. 0.1 for 10 %")
    if isinstance(heldout, int) and heldout < 0:
        raise ConfigError(f"heldout count {heldout} is negative; use a count per class >= 0")
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for cls in torch.unique(labels).tolist():  # sorted, so the draw order is fixed
        members = torch.nonzero(labels == cls).flatten()
        if isinstance(heldout, float):
            count = int(np.floor(heldout * len(members) + 0.5))
        else:
            count = heldout
        if count > len(members):
            raise ConfigError(
                f"class {cls} has {len(members)} examples, fewer than the {count} to hold out; "
                f"lower heldout"
            )
        picked.append(members[torch.randperm(len(members), generator=generator)[:count]])
    held = torch.zeros(len(labels), dtype=torch.bool)
    if picked:
        held[torch.cat(picked)] = True
    return torch.nonzero(~held).flatten(), torch.nonzero(held).flatten()
