"""Frozen, validated configuration records (hashable, so loaded models can be cached by spec)."""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def __post_init__(self) -> None:
        if not self.model_name_or_path or not self.model_name_or_path.strip():
            raise ValueError("model_name_or_path is empty")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, not {self.dtype!r}")
