"""Build a model by name: a slimnas reference model, or any torchvision one as ``tv:<name>``."""

from __future__ import annotations

import torch

from slimnas.errors import ConfigError
from slimnas.models import MODELS


def build_model(name: str, **kwargs) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """A reference model by name (``resnet20``, ...) or a torchvision one (``tv:resnet18``),
    built with ``kwargs`` (``width_mult``, ``num_classes``), and its default input shape."""
    if name.startswith("tv:"):
        try:
            import torchvision
        except ImportError:
            raise ConfigError(
                "torchvision models need the 'vision' extra: pip install 'slimnas[vision]'"
            ) from None
        known = torchvision.models.list_models(module=torchvision.models)
        if name[3:] not in known:
            raise ConfigError(
                f"unknown torchvision model {name[3:]!r}; see torchvision.models.list_models()"
            )
        try:
            return torchvision.models.get_model(name[3:], **kwargs), (1, 3, 224, 224)
        except TypeError as err:  # an argument this torchvision model does not take
            raise ConfigError(
                f"cannot build torchvision model {name[3:]} with {kwargs}: {err}"
            ) from None
    if name not in MODELS:
        raise ConfigError(
            f"unknown model {name!r}; choose one of {', '.join(MODELS)} or tv:<torchvision name>"
        )
    shape = (1, 3, 224, 224) if name in ("mobilenet_v2", "proxyless_imagenet") else (1, 3, 32, 32)
    return MODELS[name](**kwargs), shape
