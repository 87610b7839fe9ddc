"""kdviz: attribution-guided knowledge distillation of language models (library, CLI and Gradio workbench).

The pipeline's stages are subpackages, each importing only the ones before it:

    lm/           the model kernel: load, prompts, one batched forward, choice scoring, generation
    attribution/  attribution methods, what is attributed (targets), subword tokens merged into words
    rationales/   selecting rationale words, their statistics, cached builds, curation, export
    distill/      distillation methods, training data, losses, the training loop, run folders, evaluation
    compare/      teacher and students on the same examples: the run, statistics, charts, report
    viz/          attribution and rationale HTML, training curves
    cli/, ui/     thin adapters: the `kdviz` command and the Gradio app (the only gradio importer)

The names below are the public API. They are imported on first use, so `import kdviz` (and `kdviz --help`) loads
neither torch nor gradio until a name that needs them is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kdviz._version import __version__

_EXPORTS = {
    "kdviz.attribution.catalog": ("list_attribution_methods",),
    "kdviz.attribution.methods": ("AttributionRequest", "attribute_requests"),
    "kdviz.attribution.targets": ("attribute", "attribute_examples", "build_requests"),
    "kdviz.config": ("ModelSpec", "TrainConfig"),
    "kdviz.data": ("load_examples",),
    "kdviz.distill.data": ("load_train_examples",),
    "kdviz.distill.loop": ("TrainResult", "finetune"),
    "kdviz.distill.methods": ("METHODS",),
    "kdviz.distill.runs": ("list_runs",),
    "kdviz.errors": ("InputError", "KdvizError", "ModelLoadError", "UnknownNameError"),
    "kdviz.lm.inference": ("generate", "generate_batch", "score_choices", "score_choices_batch"),
    "kdviz.lm.models": ("LoadedModel", "list_model_specs", "load_model"),
    "kdviz.lm.prompts": ("render",),
    "kdviz.records": (
        "ChoiceScores",
        "Example",
        "Generation",
        "Prediction",
        "TokenAttribution",
        "TrainExample",
        "load_jsonl",
        "save_jsonl",
    ),
    "kdviz.viz.attribution": ("attribution_heatmap", "attribution_html"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "AttributionRequest",
    "ChoiceScores",
    "Example",
    "Generation",
    "Prediction",
    "InputError",
    "KdvizError",
    "LoadedModel",
    "METHODS",
    "ModelLoadError",
    "ModelSpec",
    "TokenAttribution",
    "TrainConfig",
    "TrainExample",
    "TrainResult",
    "UnknownNameError",
    "attribute",
    "attribute_examples",
    "attribute_requests",
    "attribution_heatmap",
    "attribution_html",
    "build_requests",
    "finetune",
    "generate",
    "generate_batch",
    "list_attribution_methods",
    "list_model_specs",
    "list_runs",
    "load_examples",
    "load_jsonl",
    "load_model",
    "load_train_examples",
    "render",
    "save_jsonl",
    "score_choices",
    "score_choices_batch",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'kdviz' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # static checkers and IDEs see the real names
    from kdviz.attribution.catalog import list_attribution_methods
    from kdviz.attribution.methods import AttributionRequest, attribute_requests
    from kdviz.attribution.targets import attribute, attribute_examples, build_requests
    from kdviz.config import ModelSpec, TrainConfig
    from kdviz.data import load_examples
    from kdviz.distill.data import load_train_examples
    from kdviz.distill.loop import TrainResult, finetune
    from kdviz.distill.methods import METHODS
    from kdviz.distill.runs import list_runs
    from kdviz.errors import InputError, KdvizError, ModelLoadError, UnknownNameError
    from kdviz.lm.inference import generate, generate_batch, score_choices, score_choices_batch
    from kdviz.lm.models import LoadedModel, list_model_specs, load_model
    from kdviz.lm.prompts import render
    from kdviz.records import (
        ChoiceScores,
        Example,
        Generation,
        Prediction,
        TokenAttribution,
        TrainExample,
        load_jsonl,
        save_jsonl,
    )
    from kdviz.viz.attribution import attribution_heatmap, attribution_html
