"""Frozen, validated configuration records (hashable, so loaded models can be cached by spec)."""

from __future__ import annotations

import functools
import types
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin, get_type_hints

from kdviz.errors import InputError
from kdviz.records import PredictMode  # get_type_hints resolves the annotation at run time

DTYPE_FLAGS = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # the CLI's --dtype -> ModelSpec.dtype


@dataclass(frozen=True)
class ModelSpec:
    """What to load: a hub id, a local folder, a `.gguf` file, `tiny*` or `embedded-*`."""

    model_name_or_path: str = field(metadata={"help": "hub id, local path, .gguf file, tiny, embedded-teacher, ..."})
    device: str = field(default="auto", metadata={"help": "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps"})
    dtype: str = field(
        default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16"}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "run model code from the hub (off: unsafe)"})
    chat: bool | None = field(default=None, metadata={"help": "use the chat template; None = when the model has one"})
    revision: str | None = field(default=None, metadata={"help": "hub revision (branch, tag or commit)"})
    device_map: str | None = field(
        default=None, metadata={"help": "auto: spread the model over the GPUs, then the CPU (accelerate); None: all on "
                                "`device`"},
    )  # fmt: skip
    load_in_4bit: bool = field(default=False, metadata={"help": "4-bit weights (bitsandbytes; a CUDA GPU only)"})

    def __post_init__(self) -> None:
        if not self.model_name_or_path or not self.model_name_or_path.strip():
            raise InputError("model_name_or_path is empty")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise InputError(f"dtype must be auto, float32, bfloat16 or float16, not {self.dtype!r}")
        if self.device_map not in (None, "auto"):
            raise InputError(f"device_map must be auto or None, not {self.device_map!r}")


RECORDED_KEYS = ("data_files",)  # what a run's config.yaml adds to the settings: its data's paths and hashes


@dataclass(frozen=True)
class TrainConfig:
    """Everything a fine-tune depends on: a run is reproducible from this record alone (its `config.yaml`)."""

    data: str = field(
        metadata={"help": "rationale export (folder, .jsonl, .parquet), curated records.jsonl or dataset"}
    )
    out: str = field(metadata={"help": "run folder to create (runs/<name>)"})
    student: str = field(default="embedded-student", metadata={"help": "student model spec"})
    method: str = field(default="standard", metadata={"help": "standard, teacher_label, rationale_input, ..."})
    teacher: str | None = field(default=None, metadata={"help": "teacher spec; logit_kd and gkd need it"})
    max_steps: int = field(default=30, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "examples per step (per device)"})
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps, then linear decay to 0"})
    seed: int = field(default=0, metadata={"help": "seeds the split, the data order and the weights' init"})
    eval_every: int = field(
        default=10, metadata={"help": "evaluate every N steps (and at the end); 0: only at the end"}
    )
    save_every: int = field(
        default=50, metadata={"help": "save a checkpoint to resume from (--resume) every N steps; 0: only at the end"}
    )
    eval_size: int = field(default=50, metadata={"help": "held-out examples for evaluation (at most half the data)"})
    limit: int | None = field(default=None, metadata={"help": "read only the first N data rows"})
    max_length: int = field(
        default=256, metadata={"help": "tokens per training sequence; longer prompts keep their end"}
    )
    alpha: float = field(default=0.5, metadata={"help": "weight of the answer loss in multitask and logit_kd"})
    kd_loss: Literal["kl", "jsd"] = field(
        default="kl", metadata={"help": "logit_kd divergence: kl (forward KL) or jsd"}
    )
    temperature: float = field(default=2.0, metadata={"help": "logit_kd softmax temperature"})
    dpo_beta: float = field(
        default=0.1, metadata={"help": "dpo: β, how far the student may move from where it started (higher: less)"}
    )
    dpo_rationale: bool = field(
        default=False, metadata={"help": "dpo: the preferred answer also gives the teacher's rationale words"}
    )
    gkd_beta: float = field(
        default=0.5, metadata={"help": "gkd: β of the generalised JSD, 0 forward KL to 1 reverse KL"}
    )
    gkd_lmbda: float = field(
        default=0.5, metadata={"help": "gkd: λ, the share of steps on the student's own generated answers"}
    )
    report_to: Literal["none", "trackio", "tensorboard", "wandb"] = field(
        default="none", metadata={"help": "also log losses, lr, eval accuracy and samples to a tracker"}
    )
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (peft) instead of all weights"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator"})
    device: str = field(default="auto", metadata={"help": "auto (cuda when present, else cpu), cpu, cuda"})
    n_samples: int = field(default=4, metadata={"help": "sample predictions kept at each evaluation"})
    predict: PredictMode | None = field(
        default=None,
        metadata={"help": "how the student's evaluation predicts a choice: letter, cloze or choice-text (none: "
                  "each choice's text after the trained prompt, as choice-text)"},
    )  # fmt: skip
    # Where the teacher's outputs come from (Distilling step-by-step trains on the 540B teacher's chain of thought
    # that ships with the data; kdviz's own builds give attribution rationales and the embedded teacher's answers).
    rationale_source: Literal["build", "data"] = field(
        default="build",
        metadata={"help": "the teacher rationales rationale_input, multitask and dpo_rationale read: build (the "
                  "rationales in the training data: a build's attribution rationales) or data (each example's "
                  "teacher_rationale field, e.g. the 540B chain of thought)"},
    )  # fmt: skip
    label_source: Literal["build", "data"] = field(
        default="build",
        metadata={"help": "the teacher answers teacher_label, dpo and gkd read: build (the answers in the training "
                  "data: a build's teacher predictions) or data (each example's teacher_answer field)"},
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_types(self)
        checks = [
            (self.max_steps >= 1, "max_steps must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr > 0, "the learning rate must be positive"),
            (self.eval_every >= 0, "eval_every must be 0 or more"),
            (self.save_every >= 0, "save_every must be 0 or more"),
            (self.eval_size >= 1, "eval_size must be at least 1"),
            (self.max_length >= 8, "max_length must be at least 8 tokens"),
            (0.0 <= self.alpha <= 1.0, "alpha must be between 0 and 1"),
            (self.temperature > 0, "the temperature must be positive"),
            (self.dpo_beta > 0, "dpo_beta must be positive"),
            (0.0 <= self.gkd_beta <= 1.0, "gkd_beta must be between 0 and 1"),
            (0.0 <= self.gkd_lmbda <= 1.0, "gkd_lmbda must be between 0 and 1"),
            (self.lora_r >= 1, "lora_r must be at least 1"),
            (self.limit is None or self.limit >= 2, "limit must be at least 2 (training and evaluation rows)"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(asdict(self), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, **overrides) -> TrainConfig:
        """Returns the config in a YAML text, with `overrides` (non-None values) applied; the keys a run adds to
        its config.yaml to record what it read (`RECORDED_KEYS`) are not settings and are left out.

        Raises:
            InputError: not a mapping, an unknown key, a value of the wrong type (named), or an invalid value.
        """
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"a training config must be valid YAML ({str(exc).splitlines()[0]})") from exc
        if not isinstance(data, dict):
            raise InputError("a training config must be a YAML mapping of field: value")
        data = {k: v for k, v in data.items() if k not in RECORDED_KEYS}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown config key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        for f in config_fields(cls):  # YAML 1.1 reads "1e-4" as a string
            if f.kind is float and isinstance(data.get(f.name), str):
                try:
                    data[f.name] = float(data[f.name])
                except ValueError as exc:
                    raise InputError(f"{f.name} must be a number, not {data[f.name]!r}") from exc
        missing = [k for k in ("data", "out") if not data.get(k)]
        if missing:
            raise InputError(f"the config needs {' and '.join(missing)}")
        return cls(**data)


class ConfigField(NamedTuple):
    """One field of a config record, as the CLI and the type check see it."""

    name: str
    kind: type  # str, int, float or bool (None removed from an optional type)
    choices: tuple[str, ...] | None  # the values of a Literal type
    optional: bool  # None is allowed
    default: Any  # dataclasses.MISSING when the field has none
    help: str


@functools.cache
def config_fields(cls: type) -> tuple[ConfigField, ...]:
    """Returns the fields of a config dataclass with their types resolved from the annotations."""
    hints = get_type_hints(cls)
    out = []
    for f in fields(cls):
        hint, choices = hints[f.name], None
        args = get_args(hint)
        optional = get_origin(hint) in (Union, types.UnionType) and type(None) in args
        if optional:
            (hint,) = [a for a in args if a is not type(None)]
        if get_origin(hint) is Literal:
            choices = get_args(hint)
            hint = type(choices[0])
        out.append(ConfigField(f.name, hint, choices, optional, f.default, f.metadata.get("help", "")))
    return tuple(out)


_KIND_WORDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}


def check_types(config: Any) -> None:
    """Checks each field of a config dataclass against its annotation; a whole number in a float field becomes a
    float. A config read from YAML or built from widget values may hold anything, so this runs before the range
    checks (which would otherwise fail with a TypeError).

    Raises:
        InputError: a field of the wrong type or outside its Literal choices; the message names the field.
    """
    for f in config_fields(type(config)):
        value = getattr(config, f.name)
        if value is None and f.optional:
            continue
        if f.kind is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(config, f.name, float(value))
            continue
        ok = isinstance(value, f.kind) and (f.kind is bool or not isinstance(value, bool))
        if ok and (f.choices is None or value in f.choices):
            continue
        wanted = " or ".join(map(str, f.choices)) if f.choices else _KIND_WORDS.get(f.kind, f.kind.__name__)
        raise InputError(f"{f.name} must be {wanted}, not {value!r}")
