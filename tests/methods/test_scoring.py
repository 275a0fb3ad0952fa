"""Tests of methods/scoring.py: `ArchScorer` against scores computed by hand, and under 2 ranks.

As a script, run with torchrun's environment (the test sets it): ``python test_scoring.py OUT``
scores the shared archs on this rank and writes the scores under OUT.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import slimnas
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader, load_builtin, normalize
from slimnas.methods.scoring import ArchScorer, Score
from slimnas.models import MODELS
from slimnas.report.proxy import kendall_tau
from slimnas.space.units import Arch
from slimnas.train import Trainer, distributed, evaluate, sandwich_step

SCRIPT = Path(__file__)
WORLD = 2
ARCHS = 5  # shared out 3 + 2 over the ranks


def resnet20_space(fix_depth: bool = False) -> slimnas.Space:
    torch.manual_seed(0)
    space = slimnas.trace(MODELS["resnet20"](num_classes=10), torch.randn(1, 3, 32, 32))
    if fix_depth:
        for unit in space.depth_units():
            space = space.fix(unit.name)
    return space


def real_batches(count: int, size: int, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` normalised batches of ``size`` built-in training images from ``start`` on."""
    images, labels = load_builtin(train=True)
    out = []
    for i in range(count):
        part = slice(start + i * size, start + (i + 1) * size)
        out.append((normalize(images[part], CIFAR10_MEAN, CIFAR10_STD), labels[part]))
    return out


def sample_archs(space: slimnas.Space, count: int, seed: int = 1) -> list[Arch]:
    generator = torch.Generator().manual_seed(seed)
    return [space.sample(generator) for _ in range(count)]


def norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def training_flags(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def score_by_hand(model: nn.Module, batches) -> tuple[float, float, int]:
    """Accuracy, mean loss and count of ``model`` as it stands (modes already set)."""
    correct, total, count = 0, 0.0, 0
    for images, labels in batches:
        logits = model(images).float()
        total += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += int((logits.argmax(1) == labels).sum())
        count += len(labels)
    return correct / count, total / count, count


def assert_same_score(got: Score, accuracy: float, loss: float, samples: int) -> None:
    assert got.samples == samples
    assert got.accuracy == pytest.approx(accuracy, abs=1e-12)
    assert got.loss == pytest.approx(loss, rel=1e-6)


@pytest.fixture(scope="module")
def space() -> slimnas.Space:
    return resnet20_space()


@pytest.fixture
def supernet(space, randomise_bn) -> slimnas.Supernet:
    """ResNet-20 with non-trivial running statistics (so that eval mode would score otherwise),
    at a small arch and with mixed training flags, to see that the scorer restores both."""
    torch.manual_seed(0)
    supernet = slimnas.Supernet(MODELS["resnet20"](num_classes=10), space)
    randomise_bn(supernet, torch.Generator().manual_seed(0))
    supernet.train()
    supernet.model.layer2.eval()
    return supernet


@pytest.fixture(scope="module")
def batches() -> list:
    return real_batches(2, 16)


@pytest.fixture(scope="module")
def calibration() -> list:
    return real_batches(3, 16, start=100)


# ----------------------------------------------------------------------------------- one process
def test_batch_mode_scores_with_batch_statistics_and_leaves_the_supernet_alone(
    space, supernet, batches
):
    archs = [space.max_arch(), space.min_arch(), *sample_archs(space, 2)]
    before, flags = snapshot(supernet), training_flags(supernet)
    scorer = ArchScorer(supernet, batches, bn="batch")
    scores = [scorer.score(arch) for arch in archs]
    assert scorer.evaluations == len(archs)

    # Nothing of the supernet changed: buffers bit for bit, training flags, back at the max arch.
    after = snapshot(supernet)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert training_flags(supernet) == flags
    assert supernet.arch == space.max_arch()

    for arch, score in zip(archs, scores):
        by_hand = copy.deepcopy(supernet)
        by_hand.activate(arch)
        by_hand.eval()
        for norm in norms(by_hand):
            norm.train()  # normalise by each batch's statistics
        assert_same_score(score, *score_by_hand(by_hand, batches))
        # The running statistics (randomised) would have given another score.
        by_hand.eval()
        assert score.loss != pytest.approx(score_by_hand(by_hand, batches)[1], rel=1e-3)


def test_recalibrate_mode_equals_recalibrate_bn_then_evaluate(
    space, supernet, batches, calibration
):
    archs = [space.min_arch(), *sample_archs(space, 2)]
    flags = training_flags(supernet)
    scorer = ArchScorer(supernet, batches, bn="recalibrate", calibration=calibration)
    for arch in archs:
        by_hand = copy.deepcopy(supernet)
        assert slimnas.recalibrate_bn(by_hand, arch, calibration) == len(calibration)
        expected = evaluate(by_hand, batches)
        score = scorer.score(arch)
        assert_same_score(score, expected.accuracy, expected.loss, expected.samples)
        assert training_flags(supernet) == flags
        assert supernet.arch == space.max_arch()


@pytest.mark.parametrize("bn", ["batch", "recalibrate"])
def test_score_many_equals_scoring_one_by_one(space, supernet, batches, calibration, bn):
    archs = [space.max_arch(), *sample_archs(space, 3, seed=2)]
    scorer = ArchScorer(supernet, batches, bn=bn, calibration=calibration)
    many = scorer.score_many(archs)
    assert scorer.evaluations == len(archs)
    assert many == [scorer.score(arch) for arch in archs]
    assert len({s.loss for s in many}) == len(archs)  # the archs really score differently


def test_bad_input_is_refused(supernet, batches, calibration):
    with pytest.raises(slimnas.ConfigError, match="bn must be one of batch, recalibrate"):
        ArchScorer(supernet, batches, bn="eval")
    with pytest.raises(slimnas.ConfigError, match="no scoring batches"):
        ArchScorer(supernet, [])
    for missing in (None, []):
        with pytest.raises(slimnas.ConfigError, match="needs calibration batches"):
            ArchScorer(supernet, batches, bn="recalibrate", calibration=missing)
    ArchScorer(supernet, batches, bn="batch", calibration=calibration)  # ignored, not refused


# ------------------------------------------------------------------------------------ two ranks
def distributed_case() -> tuple[ArchScorer, list[Arch]]:
    """What every rank (and the test process) builds alike: a seeded ResNet-20 and its archs."""
    space = resnet20_space()
    torch.manual_seed(0)
    supernet = slimnas.Supernet(MODELS["resnet20"](num_classes=10), space)
    return ArchScorer(supernet, real_batches(2, 8)), sample_archs(space, ARCHS, seed=3)


def run_rank(out: Path) -> None:
    """Score the shared archs on this rank, then each of them alone (started by the test)."""
    torch.set_num_threads(1)
    assert distributed.init_from_env().type == "cpu"
    assert distributed.world_size() == WORLD
    rank = distributed.rank()
    scorer, archs = distributed_case()
    shared = scorer.score_many(archs)
    evaluations = scorer.evaluations
    alone = [scorer.score(arch) for arch in archs]  # this process, every arch
    distributed.barrier()
    distributed.cleanup()
    result = {
        "shared": [asdict(s) for s in shared],
        "alone": [asdict(s) for s in alone],
        "evaluations": evaluations,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(result))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_share_the_archs_and_return_the_single_process_scores(tmp_path):
    port = free_port()
    processes = []
    for rank in range(WORLD):
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",  # gloo, even on a machine with GPUs
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(WORLD),
            "LOCAL_WORLD_SIZE": str(WORLD),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for process in processes:
            logs.append(process.communicate(timeout=120)[0])
    finally:
        for process in processes:
            process.kill()
    for rank, (process, text) in enumerate(zip(processes, logs)):
        assert process.returncode == 0, f"rank {rank} failed:\n{text[-3000:]}"
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]

    # Round robin: rank 0 scored archs 0, 2, 4 and rank 1 archs 1, 3.
    assert [r["evaluations"] for r in ranks] == [3, 2]
    # Every rank returns exactly what one process computes, in the archs' order.
    for result in ranks:
        assert result["shared"] == result["alone"] == ranks[0]["alone"]
    scorer, archs = distributed_case()
    torch.set_num_threads(1)
    single = scorer.score_many(archs)
    assert len({s.loss for s in single}) == ARCHS
    for got, want in zip(ranks[0]["shared"], single):
        assert_same_score(Score(**got), want.accuracy, want.loss, want.samples)


# ------------------------------------------------------------------------------ rank agreement
def test_kendall_tau_by_hand():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    # scipy.stats.kendalltau([1, 2, 2, 3], [1, 3, 2, 2]).statistic
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.4)


@pytest.mark.slow
def test_batch_statistics_rank_archs_like_recalibrated_ones():
    """The claim of the module docstring: on a (briefly) trained supernet, scoring with each
    scoring batch's statistics orders archs as recalibrated statistics do."""
    torch.manual_seed(0)
    space = resnet20_space(fix_depth=True)
    supernet = slimnas.Supernet(MODELS["resnet20"](num_classes=10), space)
    images, labels = load_builtin(train=True)
    steps, batch = 30, 64
    loader = BatchLoader(
        images[: steps * batch],
        labels[: steps * batch],
        batch,
        augment=True,
        drop_last=True,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )
    step = sandwich_step(supernet, 4, torch.Generator().manual_seed(0))
    Trainer(supernet, loader, step_fn=step, epochs=1, progress=False).fit()
    heldout = real_batches(2, 256, start=4000)
    calibration = list(itertools.islice(iter(loader), 8))
    archs = sample_archs(space, 12, seed=4)
    batch_scores = ArchScorer(supernet, heldout, bn="batch").score_many(archs)
    recalibrated = ArchScorer(supernet, heldout, "recalibrate", calibration).score_many(archs)
    tau_loss = kendall_tau([s.loss for s in batch_scores], [s.loss for s in recalibrated])
    tau_accuracy = kendall_tau(
        [s.accuracy for s in batch_scores], [s.accuracy for s in recalibrated]
    )
    print(f"kendall tau batch vs recalibrate over {len(archs)} archs: ", end="")
    print(f"loss {tau_loss:.3f}, accuracy {tau_accuracy:.3f}")
    assert tau_loss > 0.5
    assert tau_accuracy > 0.5


if __name__ == "__main__":
    run_rank(Path(sys.argv[1]))
