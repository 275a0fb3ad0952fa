"""Tests for train/trainer.py (with optim.py, metrics_log.py, evaluate.py): exact resume, a real
SIGKILL, the non-finite guard, metrics.csv, schedules and evaluation, on tiny real training."""

from __future__ import annotations

import math
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny_training import sandwich_trainer, tiny_data, tiny_loader, tiny_model

from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader
from slimnas.errors import CheckpointError, ConfigError, SlimnasError
from slimnas.io import load_tensors
from slimnas.train import (
    MetricsLog,
    Trainer,
    TrainingError,
    checkpoint_dirs,
    evaluate,
    load_latest,
    lr_factor,
    plain_step,
    read_metrics,
)
from slimnas.train.checkpoint import STATE_FILE

SCRIPT = Path(__file__).with_name("tiny_training.py")
STEPS = 6  # 2 epochs of 3 batches
SANDWICH_STEPS = 9  # the script's run: 3 epochs of 3 batches


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    torch.set_num_threads(1)


def make_trainer(run_dir, optimizer: str = "sgd", **settings) -> Trainer:
    options = dict(
        optimizer=optimizer,
        lr=0.05 if optimizer == "sgd" else 3e-3,
        weight_decay=5e-4,
        warmup_steps=2,
        epochs=2,
        label_smoothing=0.1,
        grad_clip=2.0,
        run_dir=run_dir,
        checkpoint_every=4,
        keep_last=2,
        seed=0,
        progress=False,
    )
    options.update(settings)
    return Trainer(tiny_model(0), tiny_loader(), **options)


def assert_identical_states(a: Trainer, b: Trainer) -> None:
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for index in sa:
        for key, value in sa[index].items():
            assert torch.equal(value, sb[index][key]), (index, key)


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    text = (run_dir / "metrics.csv").read_text()
    assert text.count("step,") == 1, "exactly one header"
    return read_metrics(run_dir / "metrics.csv")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """An uninterrupted run per optimizer: the trainer and its metric rows."""
    runs = {}
    for optimizer in ("sgd", "adamw"):
        run_dir = tmp_path_factory.mktemp(f"whole-{optimizer}")
        trainer = make_trainer(run_dir, optimizer)
        trainer.fit()
        assert trainer.step == STEPS
        runs[optimizer] = (trainer, metric_rows(run_dir))
    return runs


# --------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("k", [2, 3, 5], ids=["mid-epoch-0", "epoch-end", "mid-epoch-1"])
def test_resumed_run_is_bit_identical(tmp_path, uninterrupted, optimizer: str, k: int) -> None:
    first = make_trainer(tmp_path, optimizer)
    first.fit(until_step=k)
    assert first.step == k and (tmp_path / f"ckpt-{k:08d}").is_dir()
    resumed = make_trainer(tmp_path, optimizer, resume=True)
    assert resumed.step == k
    resumed.fit()
    whole, whole_rows = uninterrupted[optimizer]
    assert_identical_states(whole, resumed)
    rows = metric_rows(tmp_path)
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    for row, expected in zip(rows, whole_rows):
        assert (row["loss"], row["lr"], row["acc"]) == (
            expected["loss"],
            expected["lr"],
            expected["acc"],
        )


def test_resume_falls_back_past_a_corrupt_checkpoint_only_when_asked(tmp_path, uninterrupted):
    make_trainer(tmp_path, checkpoint_every=1, keep_last=3).fit(until_step=4)
    newest = tmp_path / "ckpt-00000004"
    (newest / STATE_FILE).write_text((newest / STATE_FILE).read_text()[:100])
    with pytest.raises(CheckpointError, match=re.escape(str(newest / STATE_FILE))):
        make_trainer(tmp_path, resume=True)
    resumed = make_trainer(tmp_path, resume=True, fallback=True)
    assert resumed.step == 3
    assert not newest.exists() and newest.with_name("ckpt-00000004.corrupt").is_dir()
    resumed.fit()
    assert_identical_states(uninterrupted["sgd"][0], resumed)
    assert [int(r["step"]) for r in metric_rows(tmp_path)] == list(range(1, STEPS + 1))


@pytest.fixture(scope="module")
def sandwich_reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    """Final weights of the script's sandwich run, uninterrupted (in this process)."""
    trainer = sandwich_trainer(tmp_path_factory.mktemp("sandwich-whole"))
    trainer.fit()
    return trainer.model.state_dict()


def kill_and_resume(tmp_path: Path, kill_at: int, expected: dict[str, torch.Tensor]) -> None:
    """Run the script in a subprocess, SIGKILL it inside step ``kill_at``, resume it in a new
    subprocess, and compare its final weights with ``expected``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run_dir, out = tmp_path / f"killed-{kill_at}", tmp_path / f"out-{kill_at}.safetensors"
    command = [sys.executable, str(SCRIPT), str(run_dir), str(out)]
    process = subprocess.Popen(
        [*command, "--handshake"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        for call in range(1, kill_at + 1):
            assert process.stdout.readline() == "step\n", f"kill at {kill_at}"
            if call == kill_at:
                os.kill(process.pid, signal.SIGKILL)  # inside step `kill_at`
            else:
                process.stdin.write("\n")
                process.stdin.flush()
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        process.kill()
        process.wait()
    assert checkpoint_dirs(run_dir), f"kill at {kill_at}: no checkpoint"
    assert len(read_metrics(run_dir / "metrics.csv")) == kill_at - 1
    subprocess.run([*command, "--resume"], check=True, env=env, timeout=120)
    got = load_tensors(out)
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), f"kill at {kill_at}: {name}"
    rows = metric_rows(run_dir)
    assert [int(r["step"]) for r in rows] == list(range(1, SANDWICH_STEPS + 1)), kill_at


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path, sandwich_reference):
    """A real crash: the sandwich-rule run is killed inside a random step after its first
    checkpoint (every 2 steps and at epoch ends), and a new process resumes it."""
    kill_at = random.Random().randrange(3, SANDWICH_STEPS + 1)
    kill_and_resume(tmp_path, kill_at, sandwich_reference)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", range(3, SANDWICH_STEPS + 1))
def test_sigkill_at_every_step_then_resume_is_bit_identical(tmp_path, sandwich_reference, kill_at):
    kill_and_resume(tmp_path, kill_at, sandwich_reference)


def test_resume_refuses_another_model(tmp_path) -> None:
    make_trainer(tmp_path).fit(until_step=1)
    with pytest.raises(CheckpointError, match="cannot resume from .*ckpt-00000001"):
        Trainer(torch.nn.Linear(3, 10), tiny_loader(), run_dir=tmp_path, resume=True)


def test_fresh_run_refuses_a_run_dir_with_checkpoints(tmp_path) -> None:
    make_trainer(tmp_path).fit(until_step=1)
    with pytest.raises(ConfigError, match="resume=True"):
        make_trainer(tmp_path)


def test_resume_without_checkpoint_starts_fresh(tmp_path) -> None:
    trainer = make_trainer(tmp_path, resume=True)
    assert trainer.step == 0


# ---------------------------------------------------------------------------- NaN guard
def test_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path) -> None:
    plain = plain_step()
    calls = []

    def exploding(model, batch, backward):
        loss, metrics = plain(model, batch, backward)
        calls.append(1)
        return (loss * math.nan if len(calls) == 5 else loss), metrics

    trainer = make_trainer(
        tmp_path, step_fn=exploding, label_smoothing=0.0, checkpoint_every=2, keep_last=5
    )
    with pytest.raises(TrainingError, match=r"loss is nan at step 5 .*ckpt-00000004.* intact"):
        trainer.fit()
    assert issubclass(TrainingError, SlimnasError)
    assert [s for s, _ in checkpoint_dirs(tmp_path)] == [2, 3, 4]
    checkpoint = load_latest(tmp_path)
    assert checkpoint.step == 4
    # The bad step took no optimizer step: the weights are still the checkpoint's (the
    # BatchNorm statistics moved with its forward pass).
    for name, value in trainer.model.named_parameters():
        assert torch.equal(value, checkpoint.state["model"][name]), name
    assert [int(r["step"]) for r in metric_rows(tmp_path)] == [1, 2, 3, 4]
    resumed = make_trainer(tmp_path, step_fn=plain, label_smoothing=0.0, resume=True)
    resumed.fit()
    assert resumed.step == STEPS


# -------------------------------------------------------------------------- metrics.csv
def test_metrics_log_drops_rows_past_the_resume_step_and_a_torn_line(tmp_path) -> None:
    path = tmp_path / "metrics.csv"
    with MetricsLog(path) as log:
        for step in range(1, 6):
            log.append({"step": step, "loss": step / 10})
    with open(path, "a") as handle:
        handle.write("6,0.")  # a kill in the middle of a write
    with MetricsLog(path, resume_step=3) as log:
        log.append({"step": 4, "loss": 0.44, "new": 1.0})
    assert path.read_text() == "step,loss\n1,0.1\n2,0.2\n3,0.3\n4,0.44\n"
    with MetricsLog(path) as log:  # a fresh run starts a new file
        log.append({"step": 1, "loss": 1.0})
    assert path.read_text() == "step,loss\n1,1.0\n"


def test_metrics_columns_and_learning_rate_schedule(tmp_path, uninterrupted) -> None:
    rows = uninterrupted["sgd"][1]
    assert list(rows[0]) == ["step", "epoch", "lr", "loss", "acc", "grad_norm", "seconds"]
    assert [int(r["epoch"]) for r in rows] == [0, 0, 0, 1, 1, 1]
    for row in rows:
        expected = 0.05 * lr_factor(int(row["step"]) - 1, "cosine", 2, STEPS)
        assert math.isclose(float(row["lr"]), expected, rel_tol=1e-12)


# ----------------------------------------------------------------------- optim settings
def test_lr_factor_warmup_then_cosine_or_linear() -> None:
    assert [lr_factor(s, "cosine", 4, 20) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, "cosine", 4, 20) == 1.0
    assert math.isclose(lr_factor(12, "cosine", 4, 20), 0.5)
    assert math.isclose(lr_factor(12, "linear", 4, 20), 0.5)
    assert lr_factor(20, "cosine", 4, 20) == 0.0
    assert lr_factor(9, "constant", 4, 20) == 1.0


def test_batchnorm_and_biases_are_not_decayed(tmp_path) -> None:
    trainer = make_trainer(None)
    groups = trainer.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert all(p.ndim > 1 for p in groups[0]["params"])
    assert {id(p) for p in groups[1]["params"]} == {
        id(p) for p in trainer.model.parameters() if p.ndim == 1
    }
    assert groups[0]["nesterov"] and groups[0]["momentum"] == 0.9
    single = make_trainer(None, optimizer="adamw", no_decay_bn_bias=False).optimizer
    assert len(single.param_groups) == 1 and isinstance(single, torch.optim.AdamW)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"amp": True}, "CUDA"),
        ({"optimizer": "lamb"}, "optimizer must be"),
        ({"schedule": "step"}, "schedule must be"),
        ({"step_fn": plain_step(), "label_smoothing": 0.1}, "default step only"),
        ({"epochs": 0}, "epochs"),
        ({"resume": True, "run_dir": None}, "run_dir"),
    ],
)
def test_bad_settings_are_refused(settings, message: str) -> None:
    settings = {"run_dir": None, **settings}
    with pytest.raises(ConfigError, match=message):
        make_trainer(**settings)


# --------------------------------------------------------------------- learning, evaluate
def tiny_loader_eval():
    images, labels = tiny_data()
    return BatchLoader(images, labels, 16, shuffle=False, mean=CIFAR10_MEAN, std=CIFAR10_STD)


def test_training_lowers_the_loss_and_evaluate_scores_it() -> None:
    trainer = make_trainer(None, epochs=8, lr=0.1, label_smoothing=0.0, grad_clip=None)
    _, labels = tiny_data()
    before = evaluate(trainer.model, tiny_loader_eval())
    trainer.fit()
    after = evaluate(trainer.model, tiny_loader_eval())
    assert after.loss < before.loss - 0.2 and after.accuracy > 0.3  # 10 classes: chance 0.1
    assert after.samples == len(labels)
    assert trainer.model.training  # evaluate restored the mode


def test_evaluate_matches_a_hand_computation() -> None:
    model = tiny_model(3)
    batches = list(tiny_loader_eval())
    result = evaluate(model, batches)
    assert model.training
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    assert result.accuracy == (logits.argmax(1) == labels).float().mean().item()
    assert math.isclose(result.loss, F.cross_entropy(logits, labels).item(), rel_tol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision needs CUDA")
def test_mixed_precision_trains_and_resumes_on_cuda(tmp_path) -> None:
    def cuda_trainer(**settings) -> Trainer:
        images, labels = tiny_data()
        loader = BatchLoader(
            images,
            labels,
            16,
            augment=True,
            padding=1,
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
            device="cuda",
        )
        return Trainer(
            tiny_model(0).cuda(),
            loader,
            amp=True,
            run_dir=tmp_path,
            epochs=2,
            progress=False,
            **settings,
        )

    trainer = cuda_trainer()
    row = trainer.fit(until_step=2)
    assert math.isfinite(row["loss"])
    resumed = cuda_trainer(resume=True)
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == STEPS
