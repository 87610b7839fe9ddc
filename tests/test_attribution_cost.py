"""The expected cost of each attribution method, in saliency clicks, and the memory budget of one pass."""

import sys
from types import SimpleNamespace

import pytest

from kdviz.attribution import passes
from kdviz.attribution.catalog import list_attribution_methods
from kdviz.attribution.cost import cost_passes, relative_cost
from kdviz.errors import UnknownNameError
from kdviz.records import ProgressEvent


@pytest.mark.parametrize(
    "method, expected",
    [
        ("saliency", 1.0),  # the unit: one forward and one backward
        ("input_x_gradient", 1.0),
        ("attnlrp", 1.0),
        ("integrated_gradients", 20.0),  # one forward+backward per step
        ("feature_ablation", 5.5),  # 11 forwards (whole prompt + 10 words), a forward being half a unit
        ("attention", 0.5),  # one forward
    ],
)
def test_relative_cost_counts_each_methods_passes(method, expected):
    assert relative_cost(method, n_words=10, steps=20) == expected


def test_costs_grow_with_what_they_count():
    assert relative_cost("integrated_gradients", 10, steps=50) == 50.0
    assert relative_cost("feature_ablation", 39, steps=20) == 20.0  # longer prompts, more occluded words
    assert relative_cost("saliency", 500, steps=100) == 1.0  # one pass, whatever the prompt or steps
    assert cost_passes("integrated_gradients", 10, 8) == "8 forward+backward passes, one per integration step"
    assert (
        cost_passes("feature_ablation", 10, 8)
        == "11 forward passes, one per word dropped and one for the whole prompt"
    )


def test_every_method_has_a_cost_and_unknown_ones_are_refused():
    assert all(relative_cost(m, 10, 20) > 0 for m in list_attribution_methods())
    with pytest.raises(UnknownNameError, match="attribution method 'magic'"):
        relative_cost("magic", 10, 20)


def test_cost_module_does_not_import_torch():
    import subprocess

    code = "import sys, kdviz.attribution.cost; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_eta_is_elapsed_per_unit_times_units_left():
    assert ProgressEvent("steps", 12, 20, elapsed_s=60.0).eta_s == pytest.approx(40.0)
    assert ProgressEvent("steps", 0, 20, elapsed_s=3.0).eta_s is None  # no pace before the first unit
    assert ProgressEvent("steps", 5, 20).eta_s is None  # untimed
    assert ProgressEvent("steps", 20, 20, elapsed_s=9.0).eta_s == 0.0
    assert ProgressEvent.from_dict(ProgressEvent("words", 3, 7, "tiny", 1.5).to_dict()).elapsed_s == 1.5


def test_cpu_budget_is_the_fixed_default(tiny):
    assert passes.default_tokens_per_pass(tiny) == passes.CPU_TOKENS_PER_PASS == 1024


def test_cuda_budget_is_half_the_free_memory_at_the_models_activation_size(monkeypatch):
    import torch

    param = SimpleNamespace(device=torch.device("cuda", 0), element_size=lambda: 2)  # bf16
    config = SimpleNamespace(num_hidden_layers=28, hidden_size=1536)  # the 1.5B teacher's shape
    model = SimpleNamespace(parameters=lambda: iter([param]), config=config)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (80 * 10**9, 141 * 10**9))
    per_token = 36 * 28 * 1536 * 2  # ~3 MB a token
    assert passes.default_tokens_per_pass(SimpleNamespace(model=model)) == int(40 * 10**9 / per_token) == 12917
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10**6, 141 * 10**9))  # nearly full
    assert passes.default_tokens_per_pass(SimpleNamespace(model=model)) == passes.MIN_TOKENS_PER_PASS


def test_batches_follow_the_count_and_the_token_budget():
    sizes = [(1, 100), (1, 100), (1, 300), (2, 100), (1, 2000), (1, 50)]
    # 2 x 100 fit 1024; adding a 300-token row pads all three to 300 (900 tokens): still fits; a contrast row (2 rows
    # of 100) would make 5 rows x 300 = 1500; the 2000-token prompt is over the budget on its own.
    assert passes.split_batches(sizes, batch_size=4, tokens=1024) == [[0, 1, 2], [3], [4], [5]]
    assert passes.split_batches(sizes, batch_size=2, tokens=10**6) == [[0, 1], [2, 3], [4, 5]]
    assert passes.rows_and_length(40, 1, 1) == (1, 41)  # a letter against a letter: the same row
    assert passes.rows_and_length(40, 3, 2) == (2, 43)  # a longer contrast: a row of its own
