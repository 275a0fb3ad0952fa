"""Regenerate the built-in CIFAR-10 subset (``builtin/cifar10_subset.npz``) from a binary folder.

    python3 ../shared/data/cifar10.py data/cache            # the shared copy, if not there yet
    python -m slimnas.data.make_builtin data/cache          # rewrites the packaged file

From the shared copy (the SHA-256 digests below) the output is byte-identical to the shipped
file: the draw is `class_balanced_split` with a fixed seed, and the ``.npz`` is written with fixed
zip timestamps. Any other copy (e.g. the official binary release) works too but gives other
images, since the shared copy's record order and JPEG-decoded pixels differ from it; a warning
says so.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import zipfile
from pathlib import Path

import numpy as np

from slimnas.data.builtin import BUILTIN_FORMAT, builtin_file, encode_residuals
from slimnas.data.cifar import CIFAR10_CLASSES, LAYOUTS, cifar_folder, load_cifar
from slimnas.data.split import class_balanced_split
from slimnas.io import atomic_write_bytes

logger = logging.getLogger(__name__)

SEED = 2009
TRAIN_PER_CLASS = 500
TEST_PER_CLASS = 100

# The shared copy written by ../shared/data/cifar10.py (its SHA256SUMS).
SOURCE_SHA256 = {
    "data_batch_1.bin": "7a924e205cb0767fa4ff25ad07f9ec5952d3197255d1b2925a8947b3fb137a9b",
    "data_batch_2.bin": "cfbf2a7c0bec5d183dfb6517bc800084f421e0bed0e90cb4e3e1c3bf748113bb",
    "data_batch_3.bin": "0569e1f2a0a3511348f8733fefa2d86bb7ddeecce31dd1a4fae179921c41e293",
    "data_batch_4.bin": "730d544f9ef14e6728c62fc756e2cfef3696ba911cfa340ad30b8f43541d191e",
    "data_batch_5.bin": "46684d56fcd2099294f3272f687a4fe9b05683380706584296782fe2630f56f2",
    "test_batch.bin": "372ee8a62d1852f29e116a9c34932d23d8b252fbea6683034fa14ce821ccf56c",
}


def build_builtin(cifar_root: str | Path) -> bytes:
    """The bytes of the built-in ``.npz``, drawn from the CIFAR-10 binary folder ``cifar_root``."""
    return _npz_bytes(builtin_arrays(cifar_root))


def builtin_arrays(cifar_root: str | Path) -> dict[str, np.ndarray]:
    """The arrays of the built-in ``.npz`` (images stored as `encode_residuals`), in file order."""
    folder = cifar_folder(cifar_root, "cifar10")
    layout = LAYOUTS["cifar10"]
    digests = {name: _sha256(folder / name) for name in layout.train_files + layout.test_files}
    if digests != SOURCE_SHA256:
        logger.warning(
            "%s is not the shared CIFAR-10 copy; the subset will differ from the shipped one",
            folder,
        )
    arrays: dict[str, np.ndarray] = {"format": np.asarray(BUILTIN_FORMAT, dtype=np.int64)}
    for split, train, per_class in (
        ("train", True, TRAIN_PER_CLASS),
        ("test", False, TEST_PER_CLASS),
    ):
        images, labels = load_cifar(folder, "cifar10", train=train)
        _, chosen = class_balanced_split(labels, per_class, seed=SEED)
        arrays[f"{split}_residuals"] = encode_residuals(images[chosen].numpy())
        arrays[f"{split}_labels"] = labels[chosen].numpy().astype(np.uint8)
        arrays[f"{split}_source_index"] = chosen.numpy().astype(np.int32)
    arrays["classes"] = np.asarray(CIFAR10_CLASSES, dtype=str)
    arrays["source_sha256"] = np.asarray(
        [f"{k} {v}" for k, v in sorted(digests.items())], dtype=str
    )
    arrays["seed"] = np.asarray(SEED, dtype=np.int64)
    return arrays


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` like ``np.savez_compressed``'s but byte-reproducible (fixed dates)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cifar_root", help="folder holding cifar-10-batches-bin (or that folder)")
    parser.add_argument("--out", type=Path, help="output file (default: the packaged file)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or Path(str(builtin_file()))
    data = build_builtin(args.cifar_root)
    atomic_write_bytes(out, data)
    out.chmod(0o644)  # package data, readable by all (the atomic temp file starts private)
    logger.info(
        "wrote %s (%.1f MB, sha256 %s)", out, len(data) / 1e6, hashlib.sha256(data).hexdigest()
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
