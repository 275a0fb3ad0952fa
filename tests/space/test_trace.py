"""Tests for `slimnas.trace` (space/trace.py): which units a model has, and how they are named."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

import slimnas
from slimnas.models import mobilenet_v2_cifar, resnet20

CIFAR = (1, 3, 32, 32)
SMALL = (1, 3, 16, 16)  # enough for MobileNetV2's channel units, and quicker to trace


def trace_resnet20(shortcut: str = "B", **kwargs) -> slimnas.Space:
    torch.manual_seed(0)
    return slimnas.trace(resnet20(shortcut=shortcut), torch.randn(CIFAR), **kwargs)


@pytest.fixture(scope="module")
def resnet20_space() -> slimnas.Space:
    return trace_resnet20()


def assert_export_matches(
    supernet: slimnas.Supernet, arch: slimnas.Arch, shape, generator: torch.Generator
) -> None:
    x = torch.randn(shape, generator=generator)
    supernet.activate(arch)
    small = supernet.export(arch).eval()
    with torch.no_grad():
        expected = supernet(x)
        got = small(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-5, arch
    assert sum(p.numel() for p in small.parameters()) == slimnas.params(supernet.space, arch)


# ----------------------------------------------------------------------- ResNet-20, option B
def test_resnet20_stage_convs_share_one_unit(resnet20_space: slimnas.Space) -> None:
    space = resnet20_space
    out = {p: info["out_units"][0] for p, info in space.modules.items() if "out_units" in info}
    # Stage 1: the stem and every block's conv2 (identity shortcuts all the way).
    stage1 = {out["conv1"]} | {out[f"layer1.{i}.conv2"] for i in range(3)}
    assert stage1 == {"conv1"}
    # Stages 2 and 3: the projection shortcut and every block's conv2.
    for stage in (2, 3):
        paths = [f"layer{stage}.0.downsample.0"] + [f"layer{stage}.{i}.conv2" for i in range(3)]
        names = {out[p] for p in paths}
        assert names == {f"layer{stage}.0.conv2"}, names
        unit = space.units[f"layer{stage}.0.conv2"]
        assert set(paths) <= set(unit.members)
        assert unit.max_channels == 16 * 2 ** (stage - 1)
        assert unit.searchable
    assert set(space.units["conv1"].members) >= {"conv1", "bn1", "layer1.0.conv2", "layer1.2.bn2"}
    # The units of different stages are different.
    assert len({out["conv1"], out["layer2.0.conv2"], out["layer3.0.conv2"]}) == 3


def test_resnet20_each_conv1_has_its_own_unit(resnet20_space: slimnas.Space) -> None:
    space = resnet20_space
    seen = set()
    for stage in (1, 2, 3):
        for block in range(3):
            path = f"layer{stage}.{block}.conv1"
            name = space.modules[path]["out_units"][0]
            assert name == path
            unit = space.units[name]
            assert unit.searchable
            # Produced by conv1, normalised by bn1, read by conv2 of the same block only.
            assert set(unit.members) == {path, f"layer{stage}.{block}.bn1", path[:-1] + "2"}
            assert space.modules[path[:-1] + "2"]["in_units"][0] == name
            seen.add(name)
    assert len(seen) == 9


def test_resnet20_input_and_output_are_fixed(resnet20_space: slimnas.Space) -> None:
    space = resnet20_space
    fc_out = space.modules["fc"]["out_units"][0]
    stem_in = space.modules["conv1"]["in_units"][0]
    assert space.units[fc_out].choices == (10,)
    assert space.units[stem_in].choices == (3,)
    assert fc_out not in space.searchable
    assert stem_in not in space.searchable
    assert space.units[fc_out].fixed_reason and space.units[stem_in].fixed_reason


def test_resnet20_unit_count(resnet20_space: slimnas.Space) -> None:
    space = resnet20_space
    # Channel units: input, fc output, three stage units, nine conv1 units; depth units: three.
    channel = [u for u in space.units.values() if isinstance(u, slimnas.ChannelUnit)]
    depth = [u for u in space.units.values() if isinstance(u, slimnas.DepthUnit)]
    assert len(channel) == 14
    assert len(depth) == 3
    assert len(space.units) == 17
    assert len(space.searchable) == 15
    assert len(space.channel_units()) == 12
    assert not space.op_units()


def test_resnet20_depth_units(resnet20_space: slimnas.Space) -> None:
    space = resnet20_space
    assert [u.name for u in space.depth_units()] == ["layer1", "layer2", "layer3"]
    for name in ("layer1", "layer2", "layer3"):
        assert space.units[name].choices == (1, 2, 3)
    # layer1's first block has an identity shortcut and can be skipped; the others downsample.
    assert space.units["layer1"].blocks == ("layer1.0", "layer1.1", "layer1.2")
    assert space.units["layer1"].base == 0
    assert space.units["layer2"].blocks == ("layer2.1", "layer2.2")
    assert space.units["layer2"].base == 1


# -------------------------------------------------------------------------- depthwise, grouped
def test_depthwise_conv_ties_input_to_output() -> None:
    torch.manual_seed(0)
    space = slimnas.trace(mobilenet_v2_cifar(), torch.randn(SMALL))
    checked = 0
    for i in range(2, 18):  # the blocks with an expansion conv
        expand = space.modules[f"features.{i}.conv.0.0"]
        dw = space.modules[f"features.{i}.conv.1.0"]
        assert dw["in_units"][0] == dw["out_units"][0] == expand["out_units"][0]
        assert dw["group_width"] == 1
        unit = space.units[dw["out_units"][0]]
        assert unit.searchable
        assert f"features.{i}.conv.1.0" in unit.members
        # The projection reads the same unit.
        assert space.modules[f"features.{i}.conv.2"]["in_units"][0] == dw["out_units"][0]
        checked += 1
    assert checked == 16
    # Without expansion (block 1) the depthwise conv is tied to the stem.
    dw = space.modules["features.1.conv.0.0"]
    assert dw["in_units"][0] == dw["out_units"][0] == space.modules["features.0.0"]["out_units"][0]


class TinyGrouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 1)
        self.bn = nn.BatchNorm2d(32)
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.head = nn.Conv2d(32, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.grouped(torch.relu(self.bn(self.stem(x)))))


@pytest.mark.parametrize("divisor", [8, 4])
def test_grouped_conv_choices_are_multiples_of_the_group_width(divisor: int) -> None:
    torch.manual_seed(0)
    space = slimnas.trace(TinyGrouped(), torch.randn(1, 3, 8, 8), divisor=divisor)
    info = space.modules["grouped"]
    assert info["in_units"][0] == info["out_units"][0] == "stem"
    assert info["group_width"] == 8
    unit = space.units["stem"]
    assert unit.granularity == 8
    assert unit.choices == (8, 16, 24, 32)
    assert all(c % 8 == 0 for c in unit.choices[:-1])
    with pytest.raises(slimnas.ArchError, match="'stem'"):
        space.with_choices("stem", [12, 32])
    # Export at every choice runs with whole groups and matches the supernet.
    generator = torch.Generator().manual_seed(1)
    supernet = slimnas.Supernet(TinyGrouped(), space).eval()
    for c in unit.choices:
        assert_export_matches(supernet, slimnas.Arch({"stem": c}), (1, 3, 8, 8), generator)


def test_regnet_grouped_units_respect_group_width() -> None:
    torch.manual_seed(0)
    model = torchvision.models.regnet_x_400mf()
    space = slimnas.trace(model, torch.randn(1, 3, 32, 32))
    grouped = {
        path: m for path, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1
    }
    assert grouped
    for path, conv in grouped.items():
        width = conv.in_channels // conv.groups
        unit = space.units[space.modules[path]["out_units"][0]]
        assert space.modules[path]["in_units"][0] == unit.name
        assert unit.granularity % width == 0
        assert unit.searchable, unit.name
        assert all(c % width == 0 for c in unit.choices[:-1]), (unit.name, unit.choices)


# ------------------------------------------------------------------------------ channel choices
# Worked by hand from the rule: ratios k/12 (k/12 >= min_ratio) of the max, rounded to the nearest
# multiple of the divisor, bumped up one step when that lands more than 10 % below the ratio.
HAND_CHOICES = {
    (8, 0.25): {
        "conv1": (8, 16),
        "layer2.0.conv2": (8, 16, 24, 32),
        "layer3.0.conv2": (16, 24, 32, 40, 48, 56, 64),
    },
    (8, 0.5): {
        "conv1": (8, 16),
        "layer2.0.conv2": (16, 24, 32),
        "layer3.0.conv2": (32, 40, 48, 56, 64),
    },
    (4, 0.25): {
        "conv1": (4, 8, 12, 16),
        "layer2.0.conv2": (8, 12, 16, 20, 24, 28, 32),
        "layer3.0.conv2": (16, 20, 28, 32, 36, 44, 48, 52, 60, 64),
    },
    (4, 0.5): {
        "conv1": (8, 12, 16),
        "layer2.0.conv2": (16, 20, 24, 28, 32),
        "layer3.0.conv2": (32, 36, 44, 48, 52, 60, 64),
    },
}


@pytest.mark.parametrize(("divisor", "min_ratio"), list(HAND_CHOICES))
def test_channel_choices_rounding(divisor: int, min_ratio: float) -> None:
    torch.manual_seed(0)
    spaces = [
        slimnas.trace(resnet20(), torch.randn(CIFAR), divisor=divisor, min_ratio=min_ratio),
        slimnas.trace(
            mobilenet_v2_cifar(), torch.randn(SMALL), divisor=divisor, min_ratio=min_ratio
        ),
    ]
    for name, expected in HAND_CHOICES[(divisor, min_ratio)].items():
        assert spaces[0].units[name].choices == expected, name
    for space in spaces:
        for unit in space.channel_units():
            step = math.lcm(divisor, unit.granularity)
            choices = unit.choices
            assert list(choices) == sorted(set(choices))
            assert choices[-1] == unit.max_channels
            for c in choices[:-1]:
                assert c % step == 0, (unit.name, choices)
                # Never more than 10 % below the smallest ratio, never above the max.
                assert 0.9 * min_ratio * unit.max_channels <= c < unit.max_channels
            # Every ratio of the grid has a choice no more than 10 % below it and at most
            # one rounding step above it.
            for k in range(1, 13):
                ratio = k / 12
                if ratio < min_ratio:
                    continue
                target = ratio * unit.max_channels
                assert any(0.9 * target <= c <= max(target + step, step) for c in choices), (
                    unit.name,
                    ratio,
                    choices,
                )


# ------------------------------------------------------------------------------- stable names
def test_unit_names_are_stable_across_builds() -> None:
    torch.manual_seed(0)
    first = slimnas.trace(resnet20(), torch.randn(CIFAR))
    torch.manual_seed(1)
    second = slimnas.trace(resnet20(), torch.randn(CIFAR))
    assert first.to_json() == second.to_json()
    torch.manual_seed(2)
    mb1 = slimnas.trace(mobilenet_v2_cifar(), torch.randn(SMALL))
    torch.manual_seed(3)
    mb2 = slimnas.trace(mobilenet_v2_cifar(), torch.randn(SMALL))
    assert mb1.to_json() == mb2.to_json()


# ----------------------------------------------------------------------------- user narrowing
def test_trace_fix_and_choices(resnet20_space: slimnas.Space) -> None:
    space = trace_resnet20(
        fix=["layer3.0.conv2", "layer1"],
        choices={"layer2.0.conv2": [16, 32], "layer2": [2, 3]},
    )
    assert space.units["layer3.0.conv2"].choices == (64,)
    assert "layer3.0.conv2" not in space.searchable
    assert space.units["layer1"].choices == (3,)
    assert "layer1" not in space.searchable
    assert space.units["layer2.0.conv2"].choices == (16, 32)
    assert space.units["layer2"].choices == (2, 3)
    assert len(space.searchable) == 13
    # Costs read the fixed and narrowed values.
    full = resnet20_space
    assert slimnas.macs(space, space.min_arch()) > slimnas.macs(full, full.min_arch())
    assert slimnas.macs(space, space.max_arch()) == slimnas.macs(full, full.max_arch())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fix": ["layer9.conv"]},
        {"choices": {"layer9.conv": [8]}},
        {"choices": {"layer3.0.conv2": [8, 128]}},
        {"choices": {"layer3.0.conv2": [0, 64]}},
        {"choices": {"layer2": [1, 4]}},
        {"choices": {"layer2": [0, 3]}},
    ],
)
def test_trace_rejects_bad_narrowing(kwargs: dict) -> None:
    name = next(iter(kwargs.get("fix", []) or kwargs["choices"]))
    with pytest.raises(slimnas.SlimnasError, match=f"'{name}'"):
        trace_resnet20(**kwargs)


def test_space_fix_and_with_choices(resnet20_space: slimnas.Space) -> None:
    space = resnet20_space
    fixed = space.fix("layer3.0.conv2", 32)
    assert fixed.units["layer3.0.conv2"].choices == (32,)
    assert "layer3.0.conv2" not in fixed.searchable
    assert space.units["layer3.0.conv2"].searchable  # the original is unchanged
    assert space.fix("layer2").units["layer2"].choices == (3,)
    narrowed = space.with_choices("layer3.1.conv1", [64, 32, 32])
    assert narrowed.units["layer3.1.conv1"].choices == (32, 64)
    assert slimnas.macs(fixed, fixed.max_arch()) < slimnas.macs(space, space.max_arch())

    errors = [
        lambda: space.fix("nope"),
        lambda: space.with_choices("nope", [8]),
        lambda: space.fix("layer3.0.conv2", 33),
        lambda: space.fix("layer2", 4),
        lambda: space.with_choices("layer3.0.conv2", [8, 65]),
        lambda: space.with_choices("layer3.0.conv2", []),
        lambda: space.with_choices("layer1", [0, 1]),
    ]
    names = ["nope", "nope", "layer3.0.conv2", "layer2", "layer3.0.conv2", "layer3.0.conv2"]
    names.append("layer1")
    for call, name in zip(errors, names):
        with pytest.raises(slimnas.SlimnasError, match=f"'{name}'"):
            call()


# ------------------------------------------------------------------------------ untraceable
class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x
        return -x


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.body = nn.Sequential(nn.ReLU(), DataDependent())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.conv(x))


def test_untraceable_model_names_module_and_line() -> None:
    with pytest.raises(slimnas.TraceError) as info:
        slimnas.trace(Untraceable(), torch.randn(1, 3, 8, 8))
    message = str(info.value)
    assert "'body.1'" in message
    assert "if x.sum() > 0:" in message
    assert "\n" not in message
    # The user's way out works: keep the module whole.
    space = slimnas.trace(Untraceable(), torch.randn(1, 3, 8, 8), leaf_modules=[DataDependent])
    assert not space.searchable  # the opaque module pins the conv's channels


# --------------------------------------------------------------------------------- option A
def test_option_a_resnet_pins_stage_units() -> None:
    space = trace_resnet20("A")
    for name in ("conv1", "layer2.0.conv2", "layer3.0.conv2"):
        unit = space.units[name]
        assert not unit.searchable, name
        assert unit.choices == (unit.max_channels,)
        assert unit.fixed_reason
    for stage in (1, 2, 3):
        for block in range(3):
            assert space.units[f"layer{stage}.{block}.conv1"].searchable
    assert len(space.channel_units()) == 9
    assert [u.name for u in space.depth_units()] == ["layer1", "layer2", "layer3"]
    # The shortcut's zero padding is not counted, the rest is.
    assert slimnas.macs(space, space.max_arch()) == 40_551_040


# ------------------------------------------------------------------------------- VGG-like
class SmallVGG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(32 * 2 * 2, 24), nn.ReLU(), nn.Linear(24, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def test_flatten_into_linear_pins_the_last_conv(randomise_bn) -> None:
    torch.manual_seed(0)
    model = SmallVGG()
    space = slimnas.trace(model, torch.randn(1, 3, 8, 8))
    last = space.modules["features.4"]["out_units"][0]
    assert not space.units[last].searchable
    assert space.units[last].fixed_reason
    assert space.units["features.0"].searchable
    assert space.units["classifier.0"].searchable
    assert set(space.searchable) == {"features.0", "classifier.0"}
    generator = torch.Generator().manual_seed(0)
    randomise_bn(model, generator)
    supernet = slimnas.Supernet(model, space).eval()
    archs = [space.min_arch(), space.max_arch()] + [space.sample(generator) for _ in range(6)]
    for arch in archs:
        assert_export_matches(supernet, arch, (2, 3, 8, 8), generator)


# ------------------------------------------------------------------------------ op choices
class ChoiceBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = slimnas.Choice(
            {
                "k3": nn.Sequential(
                    nn.Conv2d(c, 2 * c, 3, padding=1, bias=False),
                    nn.BatchNorm2d(2 * c),
                    nn.ReLU(),
                    nn.Conv2d(2 * c, c, 1, bias=False),
                    nn.BatchNorm2d(c),
                ),
                "k5": nn.Sequential(
                    nn.Conv2d(c, 3 * c, 5, padding=2, bias=False),
                    nn.BatchNorm2d(3 * c),
                    nn.ReLU(),
                    nn.Conv2d(3 * c, c, 1, bias=False),
                    nn.BatchNorm2d(c),
                ),
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ChoiceNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.block = ChoiceBlock(16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


def test_choice_in_residual_block(randomise_bn) -> None:
    torch.manual_seed(0)
    model = ChoiceNet()
    space = slimnas.trace(model, torch.randn(1, 3, 8, 8))
    ops = space.op_units()
    assert [u.name for u in ops] == ["block.body"]
    assert isinstance(ops[0], slimnas.OpUnit)
    assert ops[0].choices == ("k3", "k5")
    for name, hidden in (("k3", 32), ("k5", 48)):
        unit = space.units[f"block.body.{name}.0"]
        assert unit.searchable
        assert unit.max_channels == hidden
        assert f"block.body.{name}.1" in unit.members
        # The candidate's output joins the residual: the stem's unit.
        assert space.modules[f"block.body.{name}.3"]["out_units"][0] == "stem"
    # Costs switch with the op.
    base = space.max_arch()
    macs = {op: slimnas.macs(space, base.merged({"block.body": op})) for op in ("k3", "k5")}
    assert macs["k5"] > macs["k3"]
    generator = torch.Generator().manual_seed(0)
    randomise_bn(model, generator)
    supernet = slimnas.Supernet(model, space).eval()
    for op in ("k3", "k5"):
        archs = [base.merged({"block.body": op})]
        archs += [space.sample(generator).merged({"block.body": op}) for _ in range(4)]
        archs.append(space.min_arch().merged({"block.body": op}))
        for arch in archs:
            assert_export_matches(supernet, arch, (2, 3, 8, 8), generator)
