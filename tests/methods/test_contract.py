"""The contract every registered method keeps (timm-style, one parametrised suite): a tiny fit,
a search of two budgets, every result within its budget as counted on the exported model, and
a run interrupted mid-training that resumes to the same archs."""

from __future__ import annotations

import importlib.util

import pytest

from slimnas.cost.budget import Budget
from slimnas.cost.measured import module_macs
from slimnas.methods import method_class, method_names
from slimnas.methods.setup import StageStopped
from tests.helpers.search import tiny_example, tiny_setup, tiny_supernet

# Options that keep each built-in method to seconds on the tiny data (any other: defaults).
SMALL = {
    "random": {"samples": 4},
    "evolution": {"population": 4, "generations": 2},
    "tas": {"arch_lr": 0.05},
    "tas_width": {"arch_lr": 0.05},
    "proxyless": {"warmup_epochs": 1, "arch_every": 1, "arch_lr": 0.05},
    "joslim": {"refit_every": 1, "warmup": 2, "pool": 32, "refresh_images": 32},
}
OP_METHODS = ("proxyless", "fixed")  # they search op units: a ProxylessNAS-space model
BUILTIN = list(method_names())


def run(name: str, folder, **recipe):
    """Method ``name`` fitted on a fresh tiny supernet in ``folder``, searching two budgets."""
    ops = name in OP_METHODS
    supernet = tiny_supernet("proxyless_cifar_small" if ops else "resnet20", ops=ops)
    texts = ("macs<=90%", "macs<=80%") if ops else ("macs<=70%", "macs<=45%")
    budgets = [Budget.parse(t, supernet.space) for t in texts]
    cls = method_class(name)
    method = cls(cls.Options.from_table(f"search.{name}", SMALL.get(name, {})))
    method.check(supernet.space, budgets)
    # Batches of 16: every training (TAS trains on half the images) takes a few steps, so that
    # max_steps=1 interrupts it.
    method.fit(supernet, tiny_setup(folder, batch_size=16, **recipe))
    return method, supernet, budgets, method.search(budgets)


@pytest.mark.parametrize("name", BUILTIN)
def test_every_method_meets_its_budgets_on_the_exported_model_and_resumes(name, tmp_path):
    if name == "joslim" and importlib.util.find_spec("botorch") is None:
        pytest.skip("joslim needs the botorch extra")
    method, supernet, budgets, results = run(name, tmp_path / "whole")
    assert results and {r.budget for r in results} <= {b.text for b in budgets}
    if not any(r.info.get("reference") for r in results):  # a reference is one arch
        assert [r.budget for r in results] == [b.text for b in budgets]
    for result in results:
        budget = next(b for b in budgets if b.text == result.budget)
        exported = (method.weights(result.budget) or supernet).export(result.arch)
        macs = module_macs(exported, tiny_example())
        assert macs == result.costs["macs"]
        assert macs <= budget.limit or result.info.get("reference"), result
        assert result.method == name

    folder = tmp_path / "interrupted"
    cls = method_class(name)
    if cls.shared_supernet or cls.trains:
        with pytest.raises(StageStopped):
            run(name, folder, max_steps=1)
    else:  # nothing to interrupt (no training): a second run reads the first one's files
        run(name, folder)
    _, _, _, resumed = run(name, folder)
    assert [r.arch for r in resumed] == [r.arch for r in results]
