"""Tests for `kd_step` in train/step.py: Hinton's distillation from a frozen teacher, on tiny real
models and batches."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from tiny_training import SIZE, tiny_model, tiny_supernet

from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader
from slimnas.errors import ConfigError
from slimnas.train import Trainer, kd_step, plain_step

IMAGES = 32
BATCH = 8


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    torch.set_num_threads(1)


def random_loader(seed: int = 0) -> BatchLoader:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (IMAGES, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (IMAGES,), generator=generator)
    return BatchLoader(images, labels, BATCH, seed=seed, mean=CIFAR10_MEAN, std=CIFAR10_STD)


def a_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(random_loader()))


def training_teacher() -> torch.nn.Module:
    """A teacher left in train mode except its dropout, so that restored flags are visible."""
    teacher = tiny_model(seed=1).train()
    teacher.drop.eval()
    return teacher


def flags(model: torch.nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


def run_step(step, model, batch) -> tuple[torch.Tensor, dict, int]:
    """Run ``step`` as the Trainer would; returns the loss, metrics and ``backward`` calls."""
    calls = []
    loss, metrics = step(model, batch, calls.append)
    return loss, metrics, len(calls)


def test_loss_is_hintons_kd_loss_written_out():
    images, labels = batch = a_batch()
    student, teacher = tiny_model(seed=0).train(), training_teacher()
    alpha, t = 0.7, 3.0

    torch.manual_seed(5)  # the student's dropout
    loss, metrics, calls = run_step(kd_step(teacher, alpha, t), student, batch)

    with torch.no_grad():
        teacher_logits = copy.deepcopy(teacher).eval()(images)
    torch.manual_seed(5)
    logits = student(images)
    p_teacher = F.softmax(teacher_logits / t, dim=1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(logits / t, dim=1))).sum(dim=1).mean()
    hard = F.cross_entropy(logits, labels)
    expected = (1 - alpha) * hard + alpha * t * t * kl

    assert calls == 0, "the Trainer does the backward"
    assert loss.requires_grad
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(metrics["loss_ce"], hard.detach())
    assert float(metrics["acc"]) == float((logits.argmax(1) == labels).float().mean())


def test_teacher_gets_no_gradient_and_keeps_its_flags():
    batch = a_batch()
    student, teacher = tiny_model(seed=0).train(), training_teacher()
    before = flags(teacher)
    loss, _, _ = run_step(kd_step(teacher), student, batch)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert flags(teacher) == before


@pytest.mark.parametrize("kind", ["model", "supernet"])
def test_fit_leaves_the_teacher_untouched(kind):
    if kind == "supernet":
        teacher = tiny_supernet(seed=1)
        teacher.activate(teacher.max_arch())
        teacher.train()
    else:
        teacher = training_teacher()
    student = tiny_model(seed=0)
    teacher_state = copy.deepcopy(teacher.state_dict())
    student_state = copy.deepcopy(student.state_dict())
    before = flags(teacher)

    trainer = Trainer(
        student, random_loader(), step_fn=kd_step(teacher), epochs=1, run_dir=None, progress=False
    )
    row = trainer.fit()

    assert trainer.step == IMAGES // BATCH
    assert {"loss", "acc", "loss_ce"} <= row.keys()
    for name, value in teacher.state_dict().items():  # weights and BN buffers, steps included
        assert torch.equal(value, teacher_state[name]), name
    assert all(p.grad is None for p in teacher.parameters())
    assert flags(teacher) == before
    changed = [n for n, v in student.state_dict().items() if not torch.equal(v, student_state[n])]
    assert "conv1.weight" in changed and "bn1.running_mean" in changed


def test_alpha_zero_is_the_plain_step():
    batch = a_batch()
    student, teacher = tiny_model(seed=0).train(), training_teacher()
    torch.manual_seed(5)
    kd, kd_metrics, _ = run_step(kd_step(teacher, alpha=0.0), student, batch)
    torch.manual_seed(5)
    plain, plain_metrics, _ = run_step(plain_step(), student, batch)
    torch.testing.assert_close(kd, plain)
    torch.testing.assert_close(kd_metrics["loss_ce"], plain.detach())
    assert float(kd_metrics["acc"]) == float(plain_metrics["acc"])


@pytest.mark.parametrize(
    "alpha, temperature",
    [(-0.1, 4.0), (1.5, 4.0), (float("nan"), 4.0), (0.9, 0.0), (0.9, -1.0), (0.9, float("nan"))]
    + [(0.9, float("inf"))],
)
def test_invalid_settings_raise_at_construction(alpha, temperature):
    with pytest.raises(ConfigError, match="kd (alpha|temperature)"):
        kd_step(tiny_model(), alpha, temperature)
