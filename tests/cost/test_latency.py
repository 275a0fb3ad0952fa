"""Tests for latency: measurement (cost/latency/measure.py), segments
(cost/latency/segments.py), the table file (cost/latency/table.py, cost/latency/build.py),
prediction (cost/latency/predict.py) and latency budgets."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

import slimnas
from slimnas.cost.budget import Budget
from slimnas.cost.latency import build as latency_build
from slimnas.cost.latency.build import build_latency_table, calibration_archs, fit_line
from slimnas.cost.latency.fit import MIN_ARCHS
from slimnas.cost.latency.measure import measure_latencies, measure_latency
from slimnas.cost.latency.predict import (
    expected_latency,
    predict_latency,
    segment_sum_ms,
    segment_values,
)
from slimnas.cost.latency.segments import cut_segments, space_key
from slimnas.cost.latency.table import LatencyTable, load_latency_target
from slimnas.errors import BudgetError, ConfigError, LatencyError
from slimnas.methods.autoslim import greedy_slim
from slimnas.methods.baselines import random_search
from slimnas.methods.scoring import Score

FAST = {
    "warmup": 1,
    "repeats": 3,
    "rounds": 1,
    "calibration_archs": 3,
    "calibration_rounds": 2,
    "calibration_repeats": 3,
}


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class TinyNet(nn.Module):
    """Stem, a stage of two residual blocks (a depth unit), a strided conv, pool, classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.stage = nn.Sequential(Block(16), Block(16))
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stage(torch.relu(self.stem(x)))
        return self.fc(torch.relu(self.down(x)).mean(dim=(2, 3)))


def candidate(kernel: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(8, 16, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU6(),
        nn.Conv2d(16, 16, kernel, padding=kernel // 2, groups=16, bias=False),
        nn.BatchNorm2d(16),
    )


class ChoiceNet(nn.Module):
    """A ProxylessNAS-like op choice (two kernels or zero) after a stem."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.op = slimnas.Choice({"k3": candidate(3), "k5": candidate(5), "zero": slimnas.Zero()})
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.op(self.stem(x)).mean(dim=(2, 3)))


def traced(cls: type[nn.Module], size: int = 16):
    torch.manual_seed(0)
    model = cls().eval()
    example = torch.randn(1, 3, size, size)
    space = slimnas.trace(model, example, min_ratio=0.5, steps=2)
    return model, space, example


@pytest.fixture(scope="module")
def tiny():
    return traced(TinyNet)


@pytest.fixture(scope="module")
def table(tiny, tmp_path_factory):
    """A torch table of the tiny net, built once for the module."""
    model, space, example = tiny
    path = tmp_path_factory.mktemp("latency") / "table.json"
    build = build_latency_table(model, space, example, path, runtime="torch", **FAST)
    return path, build


# --------------------------------------------------------------------------------- measurement
@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_measure_latency_is_sane_and_records_its_setting(tiny, runtime: str) -> None:
    model, _, _ = tiny
    before = torch.get_num_threads()
    model.train()
    latency = measure_latency(model, (2, 3, 16, 16), runtime=runtime, threads=1, repeats=7)
    assert (latency.runtime, latency.threads, latency.batch, latency.repeats) == (runtime, 1, 2, 7)
    assert latency.device == "cpu" and latency.device_name.startswith("cpu: ")
    assert 0 < latency.min_ms <= latency.p10_ms <= latency.median_ms <= latency.p90_ms < 1000
    assert latency.std_ms >= 0 and latency.spread_ms >= 0
    assert torch.get_num_threads() == before  # pinned for the measurement only
    assert model.training  # the model's mode is restored


def test_measure_latency_refuses_what_it_cannot_measure(tiny) -> None:
    model, _, _ = tiny
    with pytest.raises(LatencyError, match="needs a CUDA GPU|on the CPU only"):
        measure_latency(model, (1, 3, 16, 16), runtime="onnxruntime", device="cuda")
    with pytest.raises(LatencyError, match="unknown latency runtime"):
        measure_latency(model, (1, 3, 16, 16), runtime="tflite")
    with pytest.raises(LatencyError, match="threads"):
        measure_latency(model, (1, 3, 16, 16), threads=0)


class Recorder(nn.Module):
    """Appends its name to a shared log on every call; ``width`` sets how much work it does."""

    def __init__(self, name: str, log: list[str], width: int):
        super().__init__()
        self.name, self.log = name, log
        self.conv = nn.Conv2d(3, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        return self.conv(x)


def test_measure_latencies_interleaves_rounds_and_pools_them() -> None:
    log: list[str] = []
    models = [Recorder("small", log, 2), Recorder("large", log, 256)]
    models[0].eval()  # and models[1] in training mode, as built
    small, large = measure_latencies(
        models, (1, 3, 32, 32), threads=1, warmup=2, rounds=4, repeats=3, seed=5
    )
    assert small.repeats == large.repeats == 12  # every round's calls pooled
    assert (small.threads, small.batch, small.runtime) == (1, 1, "torch")
    assert models[1].training and not models[0].training  # each model's own mode restored
    warm, rest = log[:4], log[4:]
    assert warm == ["small"] * 2 + ["large"] * 2
    # Then bursts of one untimed and three timed calls, each model once per round.
    bursts = [rest[i : i + 4] for i in range(0, len(rest), 4)]
    assert len(bursts) == 8 and all(len(set(b)) == 1 for b in bursts)
    for round_ in range(4):
        assert sorted(b[0] for b in bursts[2 * round_ : 2 * round_ + 2]) == ["large", "small"]
    assert small.median_ms < large.median_ms  # 128 times the work


@pytest.mark.parametrize("over_budget", [False, True])
def test_onnxruntime_sessions_are_held_or_built_per_round(monkeypatch, over_budget) -> None:
    import onnxruntime as ort

    from slimnas.cost.latency import sessions as latency

    built: list[int] = []

    class Counted(ort.InferenceSession):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Counted)
    if over_budget:  # any memory the first session takes is too much
        monkeypatch.setattr(latency, "held_sessions_budget", lambda: -(2**40))
    models = [nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(3, 256, 3, padding=1)]
    small, large = measure_latencies(
        models, (1, 3, 32, 32), runtime="onnxruntime", threads=1, warmup=1, rounds=3, repeats=4
    )
    # Held: one session per model. Over budget: the first, then one per model and round.
    assert len(built) == (1 + 3 * 2 if over_budget else 2)
    assert small.repeats == large.repeats == 12
    assert small.median_ms < large.median_ms  # 128 times the work, either way


def test_held_sessions_budget_is_positive_and_capped() -> None:
    from slimnas.cost.latency.measure import HELD_SESSIONS_BYTES, held_sessions_budget

    budget = held_sessions_budget()
    assert budget is None or 0 < budget <= HELD_SESSIONS_BYTES


def test_measure_latencies_refuses_bad_settings(tiny) -> None:
    with pytest.raises(LatencyError, match="rounds >= 1"):
        measure_latencies([tiny[0]], (1, 3, 16, 16), rounds=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_cuda_without_a_gpu_is_one_clear_error(tiny) -> None:
    with pytest.raises(LatencyError, match="needs a CUDA GPU") as info:
        measure_latency(tiny[0], (1, 3, 16, 16), device="cuda")
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_latency_is_timed_with_events(tiny) -> None:
    model = copy.deepcopy(tiny[0])
    latency = measure_latency(model, (8, 3, 16, 16), device="cuda", repeats=10)
    assert latency.device == "cuda" and latency.device_name.startswith("cuda: ")
    assert 0 < latency.p10_ms <= latency.median_ms <= latency.p90_ms
    assert next(model.parameters()).device.type == "cpu"  # a copy ran on the GPU


# ------------------------------------------------------------------------------------ segments
def test_segments_hold_each_layer_with_its_followers(tiny) -> None:
    model, space, example = tiny
    pieces = cut_segments(model, space, example)
    paths = [space.layers[p.layer].path for p in pieces]
    assert paths == [
        "stem.0",
        *(f"stage.{i}.conv{j}" for i in (0, 1) for j in (1, 2)),
        "down",
        "fc",
    ]
    templates = {space.layers[p.layer].path: p.template() for p in pieces}
    assert "BatchNorm2d" in templates["stem.0"] and "relu" in templates["stem.0"]
    assert "add" in templates["stage.0.conv2"] and pieces[2].inputs() == 2
    assert "mean" in templates["down"]
    for piece in pieces:  # every rebuilt segment runs at other channels
        module, shapes = piece.build(8 if piece.layer else 3, 8, 2)
        assert module(*[torch.randn(s) for s in shapes]).shape[0] == 2


# ------------------------------------------------------------------------------------- table
def test_table_round_trip(table, tiny) -> None:
    path, build = table
    _, space, _ = tiny
    data = json.loads(path.read_text())
    assert data["format"] == "slimnas-latency-table/1" and len(data["targets"]) == 1
    target = load_latency_target(path, runtime="torch", threads=1, batch=1)
    assert target.entries == build.target.entries and target.key == build.target.key
    assert all(e["median_ms"] > 0 and e["rounds"] == 1 for e in target.entries.values())
    arch = space.sample(torch.Generator().manual_seed(3))
    assert predict_latency(space, arch, target) == pytest.approx(
        predict_latency(space, arch, build.target), rel=1e-12
    )
    assert target.calibration(space)[1] > 0


class Killed(Exception):
    """Stands for the end of a killed process."""


def test_rebuilding_measures_nothing_and_a_killed_build_resumes(tiny, tmp_path, monkeypatch):
    model, space, example = tiny
    path = tmp_path / "table.json"
    calls, kill = [], [True]
    real = latency_build.measure_latency

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5 and kill:
            kill.clear()
            raise Killed  # the first build dies after four entries
        return real(*args, **kwargs)

    calibrations = []  # the models of each calibration measurement
    real_many = latency_build.measure_latencies

    def counted_many(models, *args, **kwargs):
        calibrations.append(len(models))
        return real_many(models, *args, **kwargs)

    monkeypatch.setattr(latency_build, "measure_latency", counted)
    monkeypatch.setattr(latency_build, "measure_latencies", counted_many)
    with pytest.raises(Killed):
        build_latency_table(model, space, example, path, runtime="torch", **FAST)
    saved = json.loads(path.read_text())["targets"][0]["entries"]
    assert len(saved) == 4  # what was measured before the kill is in the file
    assert calibrations == []  # the calibration comes after the entries
    calls.clear()
    first = build_latency_table(model, space, example, path, runtime="torch", **FAST)
    total = first.measured + first.reused
    assert first.reused == 4 and len(calls) == first.measured
    assert calibrations == [FAST["calibration_archs"]]  # all archs in one interleaved measurement
    calls.clear()
    again = build_latency_table(model, space, example, path, runtime="torch", **FAST)
    assert (again.measured, again.reused, len(calls), len(calibrations)) == (0, total, 0, 1)
    assert again.calibration == first.calibration


@pytest.mark.parametrize(
    ("ask", "why"),
    [
        ({"runtime": "onnxruntime", "threads": 1, "batch": 1}, "onnxruntime"),
        ({"runtime": "torch", "threads": 2, "batch": 1}, "2 threads"),
        ({"runtime": "torch", "threads": 1, "batch": 8}, "batch 8"),
    ],
)
def test_a_table_for_another_target_is_refused(table, ask, why) -> None:
    path, _ = table
    with pytest.raises(ConfigError) as info:
        load_latency_target(path, **ask)
    message = str(info.value)
    assert "\n" not in message and why in message
    assert "holds [" in message and "torch, 1 thread, batch 1" in message
    assert "slimnas latency-table" in message


def test_a_table_from_another_machine_is_refused(table, tmp_path) -> None:
    path, _ = table
    data = json.loads(path.read_text())
    data["targets"][0]["device_name"] = "cpu: Some Other CPU (arm64)"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="Some Other CPU.*build it on this machine"):
        load_latency_target(other, runtime="torch", threads=1, batch=1)


def test_a_table_of_another_model_or_no_file_is_refused(table, tmp_path) -> None:
    path, build = table
    _, other_space, _ = traced(TinyNet, size=32)  # another input size: other segments
    with pytest.raises(ConfigError, match="no measurements of this model"):
        predict_latency(other_space, other_space.max_arch(), build.target)
    with pytest.raises(ConfigError, match="does not exist; build it"):
        load_latency_target(tmp_path / "missing.json", runtime="torch", threads=1, batch=1)
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match="not a slimnas latency table"):
        LatencyTable.load(tmp_path / "bad.json")


def test_fit_line() -> None:
    assert fit_line([1.0, 2.0, 3.0], [1.5, 2.5, 3.5]) == pytest.approx((0.5, 1.0))
    assert fit_line([1.0, 3.0], [2.0, 6.0]) == pytest.approx((0.0, 2.0))
    assert fit_line([2.0], [2.5]) == pytest.approx((0.5, 1.0))  # one point: an offset


# -------------------------------------------------------------------------------- prediction
def one_hot(space: slimnas.Space, arch) -> dict[str, torch.Tensor]:
    return {
        name: torch.tensor([float(c == arch[name]) for c in unit.choices], dtype=torch.float64)
        for name, unit in space.searchable.items()
    }


def test_expected_latency_of_one_hot_probabilities_is_the_prediction(table, tiny) -> None:
    _, space, _ = tiny
    target = table[1].target
    generator = torch.Generator().manual_seed(0)
    archs = [space.max_arch(), space.min_arch()] + [space.sample(generator) for _ in range(8)]
    for arch in archs:
        expected = expected_latency(space, one_hot(space, arch), target)
        assert float(expected) == pytest.approx(predict_latency(space, arch, target), rel=1e-9)
    # smaller archs are predicted cheaper than the max
    assert predict_latency(space, space.min_arch(), target) < predict_latency(
        space, space.max_arch(), target
    )


def test_expected_latency_gradient_matches_finite_differences(table, tiny) -> None:
    _, space, _ = tiny
    target = table[1].target
    generator = torch.Generator().manual_seed(1)
    probs = {
        name: torch.rand(len(unit.choices), generator=generator, dtype=torch.float64)
        .softmax(0)
        .requires_grad_()
        for name, unit in space.searchable.items()
    }
    expected_latency(space, probs, target).backward()
    step = 1e-6
    for name, p in probs.items():
        for i in range(len(p)):
            moved = {n: q.detach().clone() for n, q in probs.items()}
            moved[name][i] += step
            up = float(expected_latency(space, moved, target))
            moved[name][i] -= 2 * step
            down = float(expected_latency(space, moved, target))
            assert p.grad[i].item() == pytest.approx((up - down) / (2 * step), rel=1e-5, abs=1e-9)


def factored(target, space, factors):
    """A copy of ``target`` whose calibration of ``space`` has these segment factors."""
    target = copy.deepcopy(target)
    key = space_key(space)
    target.calibrations[key] = {**target.calibrations[key], "segment_scales": factors}
    target._compiled.clear()
    return target


def test_segment_factors_weight_the_prediction_and_its_expectation(table, tiny) -> None:
    _, space, _ = tiny
    plain = table[1].target
    count = len(plain.layout_segments(space))
    factors = [0.5 + 0.25 * (i % 4) for i in range(count)]  # 0.5, 0.75, 1, 1.25, ...
    target = factored(plain, space, factors)
    overhead, scale = target.calibration(space)
    generator = torch.Generator().manual_seed(2)
    archs = [space.max_arch(), space.min_arch()] + [space.sample(generator) for _ in range(6)]
    for arch in archs:
        values = segment_values(space, arch, target)
        assert values == segment_values(space, arch, plain)  # the entries, without factors
        weighted = sum(f * v for f, v in zip(factors, values))
        assert segment_sum_ms(space, arch, target) == pytest.approx(weighted, rel=1e-12)
        predicted = predict_latency(space, arch, target)
        assert predicted == pytest.approx(overhead + scale * weighted, rel=1e-12)
        assert predicted != pytest.approx(predict_latency(space, arch, plain), rel=1e-6)
        expected = expected_latency(space, one_hot(space, arch), target)
        assert float(expected) == pytest.approx(predicted, rel=1e-9)
    wrong = factored(plain, space, factors[:-1])
    with pytest.raises(ConfigError, match=f"{count - 1} segment factors for {count} segments"):
        predict_latency(space, space.max_arch(), wrong)


def test_a_calibration_on_enough_archs_predicts_its_points_through_its_factors(
    tiny, tmp_path
) -> None:
    model, space, example = tiny
    path = tmp_path / "t.json"
    options = {**FAST, "calibration_archs": MIN_ARCHS}
    calibration = build_latency_table(model, space, example, path, runtime="torch", **options)
    calibration = calibration.calibration
    assert len(calibration["points"]) == MIN_ARCHS
    target = load_latency_target(path, runtime="torch", threads=1, batch=1)
    segments = len(target.layout_segments(space))
    factors = target.segment_scales(space_key(space))
    assert factors is None or (len(factors) == segments and min(factors) >= 0)
    archs = calibration_archs(space, MIN_ARCHS)
    overhead, scale = target.calibration(space)
    for point in calibration["points"]:
        values = segment_values(space, archs[point["arch"]], target)
        weighted = sum(f * v for f, v in zip(factors or [1.0] * segments, values))
        assert point["segments_ms"] == pytest.approx(weighted, rel=1e-4, abs=1e-5)
        predicted = predict_latency(space, archs[point["arch"]], target)
        assert predicted == pytest.approx(overhead + scale * point["segments_ms"], rel=1e-4)


def test_asking_for_another_number_of_calibration_archs_recalibrates(table, tiny, tmp_path):
    model, space, example = tiny
    path = tmp_path / "t.json"
    path.write_text(table[0].read_text())
    options = {**FAST, "calibration_archs": FAST["calibration_archs"] + 1}
    build = build_latency_table(model, space, example, path, runtime="torch", **options)
    assert build.measured == 0  # the entries are kept
    assert [p["arch"] for p in build.calibration["points"]] == list(
        calibration_archs(space, FAST["calibration_archs"] + 1)
    )


def test_op_units_are_predicted_per_candidate(tmp_path) -> None:
    model, space, example = traced(ChoiceNet)
    build = build_latency_table(model, space, example, tmp_path / "t.json", runtime="torch", **FAST)
    target = build.target
    arch = space.max_arch()
    latencies = {c: predict_latency(space, arch.merged({"op": c}), target) for c in ("k3", "zero")}
    assert latencies["zero"] < latencies["k3"]
    for choice in ("k3", "k5", "zero"):
        picked = arch.merged({"op": choice})
        expected = expected_latency(space, one_hot(space, picked), target)
        assert float(expected) == pytest.approx(predict_latency(space, picked, target), rel=1e-9)


# ----------------------------------------------------------------------------------- budgets
def test_latency_budgets_parse_with_a_table_and_refuse_without(table, tiny) -> None:
    _, space, _ = tiny
    target = table[1].target
    with pytest.raises(BudgetError, match="needs a latency table") as info:
        Budget.parse("latency_ms<=3.5")
    assert "\n" not in str(info.value)
    budget = Budget.parse("latency_ms<=3.5ms", space, latency=target)
    assert (budget.metric, budget.limit) == ("latency_ms", 3.5)
    arch = space.min_arch()
    assert budget.cost(space, arch) == predict_latency(space, arch, target)
    half = Budget.parse("latency_ms<=50%@cpu", space, latency=target)
    assert half.limit == pytest.approx(0.5 * predict_latency(space, space.max_arch(), target))
    with pytest.raises(BudgetError, match="device 'cuda'"):
        Budget.parse("latency_ms<=3@cuda", space, latency=target)
    with pytest.raises(BudgetError, match="only latency_ms budgets name a device"):
        Budget.parse("macs<=3M@cpu", space)


def midway_budget(space: slimnas.Space, target) -> Budget:
    """A latency budget midway between the min and the max arch's predicted latency.

    Always feasible whatever this machine's timings; a fixed share such as "70%" is not: on a
    tiny, overhead-bound net the min arch can measure above 70% of the max.
    """
    low, high = (predict_latency(space, a, target) for a in (space.min_arch(), space.max_arch()))
    limit = math.ceil(max(low, (low + high) / 2) * 1e6) / 1e6  # rounded up: low stays within
    return Budget.parse(f"latency_ms<={limit}ms", space, latency=target)


class ChannelScorer:
    """Accuracy = mean channel ratio: more channels are always better."""

    def __init__(self, space: slimnas.Space):
        self.space = space

    def score_many(self, archs):
        scores = []
        for arch in archs:
            units = self.space.channel_units()
            value = sum(arch[u.name] / u.max_channels for u in units) / len(units)
            scores.append(Score(value, 1 - value, 10))
        return scores


def test_searches_under_a_latency_budget_stay_within_it(table, tiny) -> None:
    _, space, _ = tiny
    target = table[1].target
    budget = midway_budget(space, target)
    scorer = ChannelScorer(space)
    results = random_search(space, scorer, [budget], samples=6, progress=False)
    results += greedy_slim(space, scorer, [budget], depth=True, progress=False)
    for result in results:
        predicted = predict_latency(space, result.arch, target)
        assert predicted <= budget.limit
        assert result.costs["predicted_latency_ms"] == pytest.approx(predicted)


@pytest.mark.slow
def test_archs_found_under_a_latency_budget_measure_within_it(tmp_path) -> None:
    torch.manual_seed(0)
    model = slimnas.models.resnet20()
    example = torch.randn(1, 3, 32, 32)
    space = slimnas.trace(model, example)
    build = build_latency_table(model, space, example, tmp_path / "t.json", runtime="onnxruntime")
    budget = Budget.parse("latency_ms<=60%", space, latency=build.target)
    results = random_search(space, ChannelScorer(space), [budget], samples=20, progress=False)
    supernet = slimnas.Supernet(copy.deepcopy(model), space)
    exported = supernet.export(results[0].arch)
    rounds = [measure_latency(exported, (1, 3, 32, 32), runtime="onnxruntime") for _ in "ab"]
    measured = min(rounds, key=lambda m: m.median_ms)
    assert measured.p10_ms <= budget.limit, (measured, budget.limit)
