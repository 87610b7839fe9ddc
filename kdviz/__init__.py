"""kdviz: attribution-guided knowledge distillation of language models (library, CLI and Gradio workbench).

`import kdviz` never imports gradio; the app lives in `kdviz.ui`.
"""

from .attribution import AttributionRequest, attribute_requests, list_attribution_methods
from .config import ModelSpec, TrainConfig
from .data import load_examples
from .errors import InputError, KdvizError, ModelLoadError, UnknownNameError
from .inference import generate, generate_batch, score_choices, score_choices_batch
from .models import LoadedModel, list_model_specs, load_model
from .prompts import render
from .records import ChoiceScores, Example, Generation, TokenAttribution, load_jsonl, save_jsonl
from .runs import list_runs
from .teacher import attribute, attribute_examples, build_requests
from .train import METHODS, TrainResult, finetune
from .train_data import TrainExample, load_train_examples
from .viz import attribution_heatmap, attribution_html

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "AttributionRequest",
    "ChoiceScores",
    "Example",
    "Generation",
    "InputError",
    "KdvizError",
    "LoadedModel",
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
]
