"""Images per second of the streaming loader against the in-memory loader and a training step.

The question: at ImageNet resolution, can `data.stream` (images decoded from disk per batch by
worker processes, `slimnas.data.stream.StreamingLoader`) feed a training step, or does the loader
become the bottleneck? The script writes a folder of ImageNet-like JPEGs (or PNGs) of several
sizes around 500 × 375 to a temporary directory, then measures, at 224 px:

(a) the streaming loader with ``--workers`` processes, training transforms (random-resized crop
    and flip, normalisation), in images/s over whole epochs after its first batch (the workers'
    start is reported apart);
(b) the in-memory loader (`BatchLoader`) on the same images decoded once, with its padded crop and
    flip: the upper bound of what memory gives;
(c) one plain training step (forward, backward, SGD) of torchvision's ResNet-50 and of slimnas'
    MobileNetV2 at ``--batch-size`` on this CPU with ``--threads`` threads, in images/s.

The **ratio** is (a) ÷ (c) per model: above 1 the loader keeps up with a plain step; a sandwich
step (max, min and two random archs, each with its forward and backward) costs more than a plain
step of the max arch, so a ratio above 1 means the loader is never the bottleneck of a sandwich
step either. On a CPU-only machine the workers and the step share the cores, so this is a
comparison of rates, not a simulation of a CPU training run; on a GPU machine the workers have
the CPU to themselves.

The output is a table, then one ``NAME: VALUE UNIT`` line per figure.

    .venv/bin/python bench/loader_throughput.py --threads 1          # a couple of minutes
    .venv/bin/python bench/loader_throughput.py --images 512 --workers 8 --models resnet50
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from slimnas.data import BatchLoader, load_image_folder
from slimnas.data.image_files import open_image_folder
from slimnas.data.stream import StreamingLoader

SIZES = ((500, 375), (375, 500), (500, 333), (640, 480), (400, 400))
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's


def write_folder(root: Path, images: int, classes: int, suffix: str) -> None:
    """``images`` smooth random pictures (low-frequency colour fields plus fine noise, so that
    JPEG sizes are like photographs') in ``classes`` class folders."""
    rng = np.random.default_rng(0)
    for i in range(images):
        width, height = SIZES[i % len(SIZES)]
        coarse = rng.integers(0, 256, (height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
        field = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        noise = rng.integers(-12, 13, (height, width, 3))
        pixels = np.clip(np.asarray(field, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:05d}{suffix}", quality=90)


def loader_rate(loader, epochs: int) -> tuple[float, float]:
    """(images/s over ``epochs`` epochs after the first batch, seconds to the first batch)."""
    started = time.perf_counter()
    count, first, timed_from = 0, None, None
    for _ in range(epochs):
        for images, _labels in loader:
            if first is None:
                first = time.perf_counter() - started
                timed_from = time.perf_counter()
                continue
            count += len(images)
    return count / (time.perf_counter() - timed_from), first


def step_rate(name: str, batch: int, size: int, steps: int) -> float:
    """Images/s of plain training steps (forward, backward, SGD) of model ``name``."""
    if name == "resnet50":
        import torchvision

        model = torchvision.models.resnet50(weights=None)
    else:
        from slimnas.models import MODELS

        model = MODELS[name](num_classes=1000)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - started)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=192, help="images in the folder")
    parser.add_argument("--size", type=int, default=224, help="training crop side")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="streaming decoding processes")
    parser.add_argument("--epochs", type=int, default=2, help="loader epochs timed")
    parser.add_argument("--steps", type=int, default=2, help="training steps timed per model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2"])
    parser.add_argument("--format", choices=("jpeg", "png"), default="jpeg")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    suffix = ".jpg" if args.format == "jpeg" else ".png"
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_folder(root, args.images, 4, suffix)
        print(f"wrote {args.images} {args.format} images in {time.perf_counter() - started:.1f} s")
        files, labels, _ = open_image_folder(root, args.size, workers=args.workers)
        stream = StreamingLoader(
            files,
            labels,
            args.batch_size,
            seed=0,
            drop_last=True,
            augment=True,
            mean=MEAN,
            std=STD,
        )
        stream_rate, stream_start = loader_rate(stream, args.epochs)
        images, labels, _ = load_image_folder(root, args.size)
        memory = BatchLoader(
            images,
            labels,
            args.batch_size,
            seed=0,
            drop_last=True,
            augment=True,
            mean=MEAN,
            std=STD,
            padding=args.size // 8,
        )
        memory_rate, _ = loader_rate(memory, args.epochs)
    rows.append(("stream_images_per_s", stream_rate, "img/s"))
    rows.append(("stream_first_batch", stream_start, "s"))
    rows.append(("memory_images_per_s", memory_rate, "img/s"))
    table = [
        ("loader", f"stream, {args.workers} workers", f"{stream_rate:9.1f}"),
        ("loader", "in memory", f"{memory_rate:9.1f}"),
    ]
    for name in args.models:
        rate = step_rate(name, args.batch_size, args.size, args.steps)
        rows.append((f"{name}_step_images_per_s", rate, "img/s"))
        rows.append((f"{name}_stream_ratio", stream_rate / rate, "x"))
        table.append(("step", f"{name} fwd+bwd, batch {args.batch_size}", f"{rate:9.1f}"))
    threads = torch.get_num_threads()
    print(
        f"\n{args.size} px, batch {args.batch_size}, {threads} torch threads, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'what':<8} {'':<34} {'images/s':>9}")
    for kind, what, rate in table:
        print(f"{kind:<8} {what:<34} {rate}")
    for name in args.models:
        ratio = stream_rate / dict((r[0], r[1]) for r in rows)[f"{name}_step_images_per_s"]
        verdict = "keeps up" if ratio >= 1 else "BOTTLENECK"
        print(f"stream ÷ {name} step: {ratio:.2f}x ({verdict})")
    print()
    for name, value, unit in rows:
        print(f"{name}: {value:.3f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
