"""Pruning baselines: global magnitude pruning on the space, Torch-Pruning on plain modules."""

from slimnas.pruning.magnitude import filter_scores, magnitude_arch

__all__ = ["filter_scores", "magnitude_arch"]
