"""Tests for train/losses.py against hand-written formulas."""

from __future__ import annotations

import math

import pytest
import torch

from slimnas.errors import ConfigError
from slimnas.train.losses import cross_entropy, kd_loss, soft_cross_entropy

N, K = 6, 5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    torch.set_num_threads(1)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(N, K, generator=g, dtype=torch.float64) * 2
    teacher = torch.randn(N, K, generator=g, dtype=torch.float64) * 2
    targets = torch.randint(0, K, (N,), generator=g)
    return student, teacher, targets


def log_softmax_by_hand(z: torch.Tensor) -> torch.Tensor:
    return z - torch.log(torch.exp(z).sum(dim=1, keepdim=True))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothed_cross_entropy_matches_formula(eps: float) -> None:
    student, _, targets = batch()
    q = torch.full((N, K), eps / K, dtype=torch.float64)
    q[torch.arange(N), targets] += 1 - eps
    expected = -(q * log_softmax_by_hand(student)).sum(dim=1).mean()
    torch.testing.assert_close(cross_entropy(student, targets, eps), expected)


def test_label_smoothing_out_of_range_is_refused() -> None:
    student, _, targets = batch()
    with pytest.raises(ConfigError, match="label_smoothing"):
        cross_entropy(student, targets, 1.0)


def test_soft_cross_entropy_matches_formula_and_its_gradient() -> None:
    student, teacher, _ = batch()
    p = torch.softmax(teacher, dim=1)
    student.requires_grad_(True)
    loss = soft_cross_entropy(student, p)
    expected = -(p * log_softmax_by_hand(student.detach())).sum() / N
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-6)
    loss.backward()
    # d/dz of −Σ p·log softmax(z), averaged over N rows: (softmax(z) − p) / N.
    grad = (torch.softmax(student.detach(), dim=1) - p) / N
    torch.testing.assert_close(student.grad.double(), grad, rtol=1e-5, atol=1e-7)


def test_soft_cross_entropy_of_one_hot_targets_is_cross_entropy() -> None:
    student, _, targets = batch()
    one_hot = torch.nn.functional.one_hot(targets, K).double()
    torch.testing.assert_close(
        soft_cross_entropy(student, one_hot).double(), cross_entropy(student, targets)
    )


def kl_by_hand(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """KL(softmax(teacher/T) ‖ softmax(student/T)), summed over classes, mean over rows."""
    log_p = log_softmax_by_hand(teacher / t)
    log_q = log_softmax_by_hand(student / t)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def test_kd_with_alpha_zero_is_cross_entropy() -> None:
    student, teacher, targets = batch()
    assert torch.equal(
        kd_loss(student, teacher, targets, alpha=0.0, temperature=4.0),
        cross_entropy(student, targets),
    )


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("alpha", [1.0, 0.7])
def test_kd_matches_hinton_formula(alpha: float, temperature: float) -> None:
    student, teacher, targets = batch(1)
    expected = (1 - alpha) * cross_entropy(student, targets) + alpha * temperature**2 * (
        kl_by_hand(student, teacher, temperature)
    )
    got = kd_loss(student, teacher, targets, alpha=alpha, temperature=temperature)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


def test_kd_soft_term_is_scaled_by_t_squared() -> None:
    student, teacher, targets = batch(2)
    for t in (1.0, 3.0, 5.0):
        soft = kd_loss(student, teacher, targets, alpha=1.0, temperature=t)
        ratio = soft.double() / kl_by_hand(student, teacher, t)
        assert math.isclose(float(ratio), t * t, rel_tol=1e-5)


def test_kd_does_not_train_the_teacher() -> None:
    student, teacher, targets = batch(3)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    kd_loss(student, teacher, targets, alpha=0.5, temperature=2.0).backward()
    assert student.grad is not None and teacher.grad is None


@pytest.mark.parametrize(("alpha", "temperature"), [(-0.1, 1.0), (1.5, 1.0), (0.5, 0.0)])
def test_kd_refuses_bad_settings(alpha: float, temperature: float) -> None:
    student, teacher, targets = batch()
    with pytest.raises(ConfigError):
        kd_loss(student, teacher, targets, alpha=alpha, temperature=temperature)
