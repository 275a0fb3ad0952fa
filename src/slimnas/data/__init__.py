"""Data: CIFAR binary reader, ImageFolder trees, a built-in CIFAR-10 subset, fast uint8 batches.

images, labels = slimnas.data.load_builtin(train=True)          # offline, 5,000 real images
images, labels = slimnas.data.load_cifar("data/cache", "cifar10", train=True)
train, heldout = slimnas.data.class_balanced_split(labels, 0.1, seed=0)
loader = slimnas.data.BatchLoader(images[train], labels[train], 128, augment=True,
                                  mean=CIFAR10_MEAN, std=CIFAR10_STD, seed=0)
Trainer(model, torch.utils.data.DataLoader(...))   # wrapped as slimnas.data.IterableBatches
"""

from slimnas.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    crop_flip,
    draw_crop_flip,
    normalize,
    random_crop_flip,
)
from slimnas.data.builtin import BUILTIN_CLASSES, builtin_source_index, load_builtin
from slimnas.data.cifar import CIFAR10_CLASSES, cifar_folder, load_cifar
from slimnas.data.folder import IMAGE_EXTENSIONS, find_images, load_image_folder
from slimnas.data.iterable import IterableBatches, as_batch_loader
from slimnas.data.loader import BatchLoader, derive_seed
from slimnas.data.split import class_balanced_split
from slimnas.data.tensor_dataset import ImageTensorDataset

__all__ = [
    "BUILTIN_CLASSES",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGE_EXTENSIONS",
    "BatchLoader",
    "ImageTensorDataset",
    "IterableBatches",
    "as_batch_loader",
    "builtin_source_index",
    "cifar_folder",
    "class_balanced_split",
    "crop_flip",
    "derive_seed",
    "draw_crop_flip",
    "find_images",
    "load_builtin",
    "load_cifar",
    "load_image_folder",
    "normalize",
    "random_crop_flip",
]
