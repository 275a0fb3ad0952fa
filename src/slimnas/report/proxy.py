"""Proxy quality: how well a supernet's inherited accuracy predicts retrained accuracy.

A one-shot method ranks archs by their accuracy with weights inherited from a supernet (AutoSlim
§3.2, TAS §3.2, ProxylessNAS §3.2 all rely on it); the ranking is only as good as its agreement
with the accuracy each arch reaches when trained on its own. These are the figures the report and
`bench/proxy_quality.py` print: Kendall's τ-b and Spearman's ρ between the two accuracies over the
archs of a run, and the binomial standard error of one accuracy on n images, against which a
difference between two archs is read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of two equally long sequences (ties counted as in τ-b); NaN if undefined."""
    if len(x) != len(y):
        raise ValueError(f"kendall_tau needs equal lengths, got {len(x)} and {len(y)}")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    pairs_x = concordant + discordant + ties_x
    pairs_y = concordant + discordant + ties_y
    if pairs_x == 0 or pairs_y == 0:
        return math.nan
    return (concordant - discordant) / math.sqrt(pairs_x * pairs_y)


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: Pearson's correlation of the (tie-averaged) ranks; NaN if undefined."""
    if len(x) != len(y):
        raise ValueError(f"spearman_rho needs equal lengths, got {len(x)} and {len(y)}")
    rx, ry = _ranks(x), _ranks(y)
    n = len(rx)
    if n < 2:
        return math.nan
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else math.nan


def accuracy_standard_error(accuracy: float, images: int) -> float:
    """Binomial standard error √(p(1 − p)/n) of an accuracy ``p`` measured on ``images``."""
    if images <= 0:
        raise ValueError(f"images must be positive, got {images}")
    p = min(max(accuracy, 0.0), 1.0)
    return math.sqrt(p * (1 - p) / images)


def proxy_section(summaries: Sequence[Mapping], supernet: Mapping | None) -> list[str]:
    """The report's "Proxy quality" section: τ and ρ between each found arch's inherited
    accuracy and its mean retrained test accuracy, and the supernet's uniform path.

    Args:
        summaries: `slimnas.report.tables.summarize` entries (one per method and budget).
        supernet: the supernet stage's scores (``uniform_path``: ratio, MACs share, accuracy,
            images), or None.
    """
    # Inherited accuracies rank archs only within one network (`SearchStage.scored_by`); runs
    # from before ``scored_by`` was recorded count as one network.
    networks: dict[str, list[tuple[float, float]]] = {}
    for s in summaries:
        if s.get("search_accuracy") is not None and s.get("test_mean") is not None:
            pair = (s["search_accuracy"], s["test_mean"])
            networks.setdefault(s.get("scored_by") or "supernet", []).append(pair)
    lines = ["## Proxy quality"]
    if len(networks) > 1:
        lines.append(
            f"The found archs inherit the weights of {len(networks)} networks (a method that "
            "trains its own, per budget for TAS and ProxylessNAS, scores its archs with it); an "
            "inherited accuracy ranks archs only against those of the same network."
        )
    for network, pairs in sorted(networks.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        whose = "the run's supernet" if network == "supernet" else f"`{network}`'s own network"
        if len(pairs) >= 3:
            inherited, retrained = zip(*pairs)
            lines.append(
                f"Over the {len(pairs)} found archs (method × budget) that inherit {whose}'s "
                "weights, the inherited accuracy (Search acc.) ranks them against their mean "
                f"retrained test accuracy with Kendall's τ = "
                f"{kendall_tau(inherited, retrained):.2f} and Spearman's "
                f"ρ = {spearman_rho(inherited, retrained):.2f} (1: the same order; archs of one "
                "budget cost about the same, so this mostly asks whether the network ranks "
                "archs of one cost; `bench/proxy_quality.py` measures it over a wider spread)."
            )
        else:
            lines.append(
                f"{len(pairs)} found arch(s) with a retrained accuracy inherit {whose}'s "
                "weights: too few to rank (at least 3)."
            )
    if not networks:
        lines.append(
            "0 found archs have both an inherited and a retrained accuracy: too few to rank "
            "(at least 3)."
        )
    stored = (supernet or {}).get("uniform_path") or []
    # Runs from before `_uniform_path` skipped repeats stored one entry per ratio, equal ones
    # where two ratios round to one arch; a space with no width to vary has one arch only.
    path = [
        p for i, p in enumerate(stored) if not i or p["macs_share"] != stored[i - 1]["macs_share"]
    ]
    if len(path) == 1:
        lines.append(
            "The supernet has no uniform path to check: every width gives the same arch (no "
            "channels are searched)."
        )
    elif path:
        images = path[0].get("images") or 0
        se = accuracy_standard_error(max(p["accuracy"] for p in path), images) if images else 0
        drops = [(a, b) for a, b in zip(path, path[1:]) if b["accuracy"] < a["accuracy"] - se]
        verdict = (
            "rises with width everywhere (no drop larger than one standard error, "
            f"{100 * se:.1f} points on {images} images)"
            if not drops
            else f"falls where width grows at {len(drops)} of {len(path) - 1} steps by more than "
            f"one standard error ({100 * se:.1f} points): the supernet ranks archs poorly"
        )
        lines.append(
            f"Supernet accuracy along the uniform path (BatchNorm recalibrated, held-out): "
            f"it {verdict}."
        )
        lines.append(
            "| width | MACs (% of max) | held-out top-1 (%) |\n| ---: | ---: | ---: |\n"
            + "\n".join(
                f"| {p['ratio']:.2f} | {100 * p['macs_share']:.1f} | {100 * p['accuracy']:.2f} |"
                for p in path
            )
        )
    return lines


__all__ = ["accuracy_standard_error", "kendall_tau", "proxy_section", "spearman_rho"]
