"""Classification losses: label-smoothed CE, soft-target CE, knowledge distillation.

- `cross_entropy`: torch's cross-entropy with label smoothing (Szegedy et al., "Rethinking the
  Inception Architecture for Computer Vision", arXiv 1512.00567, §7): the true class gets
  ``1 − ε + ε/K`` and every class ``ε/K``. The released US-Nets code gives the others ``ε/(K−1)``
  instead; the difference is negligible and we keep torch's, which every user already knows.
- `soft_cross_entropy`: ``−Σ_k p(k) · log softmax(z)(k)``, averaged over the batch, the in-place
  distillation loss of "Universally Slimmable Networks and Improved Training Techniques" (Yu &
  Huang, arXiv 1903.05134, §3.2): every sub-network learns the max network's predicted
  distribution, temperature 1, no hard-label term.
- `kd_loss`: Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network" (arXiv
  1503.02531): ``(1 − α)·CE(s, y) + α·T²·KL(softmax(t/T) ‖ softmax(s/T))``. The ``T²`` keeps the
  soft term's gradients on the scale of the hard term's when ``T`` changes (§2 of the paper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slimnas.errors import ConfigError


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` ``[N, K]`` against class indices ``[N]``, label-smoothed."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``−Σ_k target_probs[k] · log softmax(logits)[k]``.

    Args:
        logits: student outputs ``[N, K]``.
        target_probs: a distribution per row ``[N, K]`` (detach it when it is a teacher's).

    Computed in float32 whatever the inputs' precision, so that mixed precision does not lose
    the small probabilities.
    """
    log_probs = F.log_softmax(logits.float(), dim=1)
    return -(target_probs.float() * log_probs).sum(dim=1).mean()


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.9,
    temperature: float = 4.0,
) -> torch.Tensor:
    """Hinton's distillation loss ``(1 − α)·CE(s, y) + α·T²·KL(softmax(t/T) ‖ softmax(s/T))``.

    Args:
        student_logits: ``[N, K]``.
        teacher_logits: ``[N, K]``; detached here, the teacher is never trained by this loss.
        targets: class indices ``[N]``.
        alpha: weight of the soft term in ``[0, 1]``; 0 gives plain cross-entropy.
        temperature: softening ``T > 0`` of both distributions.

    The KL term is summed over classes and averaged over the batch (``batchmean``), which is
    the KL divergence proper.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"kd alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ConfigError(f"kd temperature must be positive, got {temperature}")
    hard = F.cross_entropy(student_logits, targets)
    if alpha == 0.0:
        return hard
    t = temperature
    student = F.log_softmax(student_logits.float() / t, dim=1)
    teacher = F.log_softmax(teacher_logits.detach().float() / t, dim=1)
    soft = F.kl_div(student, teacher, reduction="batchmean", log_target=True)
    return (1.0 - alpha) * hard + alpha * t * t * soft
