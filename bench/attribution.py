"""Benchmark kdviz's batched gradient attribution against a per-example Captum loop and a bare floor.

For each method (kdviz's "saliency" and "integrated_gradients") it times, in examples per second:

  kdviz   `kdviz.attribution.methods.attribute_requests(loaded, requests, method, batch_size=B, steps=S)`, the full
          output-token x input-token matrix (per_token=True), B examples per forward pass.
  captum  what a user writes with Captum 0.9: one example at a time through `LLMGradientAttribution` on the
          embedding layer. Captum's LLM wrapper refuses `Saliency`, so "saliency" is timed against
          `LayerGradientXActivation`, the nearest gradient-only method it accepts (same cost: one forward and
          one backward per target token); "integrated_gradients" against `LayerIntegratedGradients`.
  floor   one forward and one backward of the summed target log-probability over the same padded batches,
          the least any gradient method can cost (times S for integrated gradients).

Targets are the gold answers, so all three attribute the same tokens. A sanity check compares kdviz's and
Captum's whole-target scores on the prompt text's tokens: kdviz input_x_gradient vs LayerGradientXActivation, and
kdviz integrated_gradients vs LayerIntegratedGradients twice, with Captum's default baseline (every prompt token,
chat template included, swapped for token id 0) and, untimed, with kdviz's (a zero embedding at the prompt text's
tokens, the template kept). The two IG paths share their Gauss-Legendre nodes, so only the baseline can part them.

    python bench/attribution.py                     # embedded teacher, defaults (about 35 min on 2 CPU cores)
    python bench/attribution.py --model tiny --n 8  # smoke run, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmark this checkout's kdviz, whatever `pip install -e` points at
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import captum  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from captum.attr import (  # noqa: E402
    LayerGradientXActivation,
    LayerIntegratedGradients,
    LLMGradientAttribution,
    TextTokenInput,
)

from kdviz import load_examples, load_model  # noqa: E402
from kdviz.attribution.methods import IG_TOKENS_PER_PASS, AttributionRequest, attribute_requests  # noqa: E402
from kdviz.lm.forward import embed, make_batch, target_logprobs  # noqa: E402
from kdviz.lm.models import LoadedModel  # noqa: E402
from kdviz.lm.prompts import SYSTEM_PROMPT, EncodedPrompt, encode, encode_target, render  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import arch  # noqa: E402  (random:<name> specs: the embedded architectures, random weights)

arch.install()

DEFAULT_DATA = REPO / ".." / "shared" / "data" / "cqa" / "train.jsonl"
METHODS = ("saliency", "integrated_gradients")
T = TypeVar("T")
CAPTUM_METHOD = {"saliency": "LayerGradientXActivation", "integrated_gradients": "LayerIntegratedGradients"}


@dataclass
class Prepared:
    """One benchmark example: kdviz's request plus what the Captum loop needs to attribute the same target."""

    request: AttributionRequest
    encoded: EncodedPrompt
    model_text: str  # the exact string kdviz tokenizes (chat template applied)
    target_text: str  # the target as Captum tokenizes it (add_special_tokens=False)
    target_ids: tuple[int, ...]


@dataclass
class Timing:
    """Wall-clock seconds of one path over its first `examples` examples."""

    path: str
    examples: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.examples / self.seconds


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        default="embedded-teacher",
        help="kdviz model spec (default embedded-teacher; tiny; random:embedded-teacher, see bench/arch.py)",
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CQA-style JSONL (default ../shared/data/cqa)")
    p.add_argument("--n", type=int, default=64, help="questions timed by kdviz and the floor for saliency")
    p.add_argument("--ig-n", type=int, default=4, help="questions timed by kdviz and the floor for IG (default 4)")
    p.add_argument("--captum-limit", type=int, default=8, help="time Captum on the first K questions only")
    p.add_argument("--batch-size", type=int, default=4, help="kdviz and floor batch size (default 4)")
    p.add_argument("--steps", type=int, default=20, help="integrated-gradients steps, both libraries (default 20)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: torch's own); 1 on a shared machine"
    )
    args = p.parse_args(argv)
    if min(args.n, args.ig_n, args.captum_limit, args.batch_size, args.steps) < 1 or args.threads < 0:
        p.error("--n, --ig-n, --captum-limit, --batch-size and --steps must be at least 1")
    return args


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def device_line(loaded: LoadedModel) -> str:
    dev = loaded.device
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"{os.cpu_count()} cores"
    return (
        f"device: {dev} ({name}, {torch.get_num_threads()} torch threads) | python {platform.python_version()} | "
        f"torch {torch.__version__} | transformers {transformers.__version__} | captum {captum.__version__}"
    )


def model_text(loaded: LoadedModel, prompt: str) -> str:
    """Returns the full string kdviz.prompts.encode tokenizes for `prompt` (same chat template and system turn)."""
    if not loaded.chat:
        return prompt
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
    apply = loaded.tokenizer.apply_chat_template
    try:
        return apply(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # templates that refuse a system turn, as in kdviz.prompts.encode
        return apply(messages[1:], tokenize=False, add_generation_prompt=True)


def prepare(loaded: LoadedModel, data: Path, n: int) -> list[Prepared]:
    """Returns the first `n` questions with their gold answers as targets, checked to tokenize alike for both."""
    prepared = []
    for ex in load_examples(data, limit=n):
        rendered = render(ex)
        encoded = encode(loaded, rendered.text)
        target_ids = encode_target(loaded, encoded, ex.answer)
        text, target = model_text(loaded, rendered.text), encoded.target_prefix + ex.answer
        captum_ids = TextTokenInput(text, loaded.tokenizer).inp_tensor[0].tolist()
        captum_target = loaded.tokenizer.encode(target, add_special_tokens=False)
        if captum_ids != list(encoded.ids) or captum_target != list(target_ids):
            raise SystemExit(f"example {ex.id}: Captum would tokenize the prompt or target differently from kdviz")
        request = AttributionRequest(rendered.text, ex.answer, "gold", rendered.template_spans, ex.id)
        prepared.append(Prepared(request, encoded, text, target, target_ids))
    return prepared


def timed(fn: Callable[..., T], *args: Any) -> tuple[float, T]:
    """Returns (wall-clock seconds, result) of `fn(*args)`, synchronising the GPU around it."""
    sync()
    start = time.perf_counter()
    result = fn(*args)
    sync()
    return time.perf_counter() - start, result


def floor_pass(loaded: LoadedModel, chunk: Sequence[Prepared]) -> None:
    """One forward and one backward of the summed target log-probability over one padded batch."""
    with torch.enable_grad():
        batch = make_batch(loaded, [(p.encoded.ids, p.target_ids) for p in chunk])
        x = embed(loaded, batch.input_ids).detach().requires_grad_(True)
        logp, _ = target_logprobs(loaded, batch, inputs_embeds=x)
        torch.autograd.grad(logp.sum(), x)


def kdviz_scores(loaded: LoadedModel, chunk: Sequence[Prepared], method: str, steps: int) -> list[torch.Tensor]:
    """kdviz's whole-target scores [n_content] per example, the chunk as one batch with the full token matrix."""
    requests = [p.request for p in chunk]
    results = attribute_requests(loaded, requests, method, batch_size=len(chunk), steps=steps, per_token=True)
    return [torch.tensor(r.seq_scores) for r in results]


def captum_attributor(loaded: LoadedModel, method: str) -> LLMGradientAttribution:
    layer = loaded.model.get_input_embeddings()
    if method == "saliency":
        return LLMGradientAttribution(LayerGradientXActivation(loaded.model, layer), loaded.tokenizer)
    return LLMGradientAttribution(LayerIntegratedGradients(loaded.model, layer), loaded.tokenizer)


def captum_scores(
    llm: LLMGradientAttribution, p: Prepared, steps: int | None, zero: int | None = None
) -> torch.Tensor:
    """Captum's whole-target scores for one example, on kdviz's content positions (what a user's loop body does).

    `steps` None: LayerGradientXActivation. Otherwise LayerIntegratedGradients with Captum's default baseline, or,
    given `zero` (a token id whose embedding row is zeroed), with kdviz's baseline.
    """
    tokenizer = llm.tokenizer
    if steps is None:
        inp, kwargs = TextTokenInput(p.model_text, tokenizer), {}
    else:
        # The step chunking matches kdviz's memory budget.
        kwargs = dict(n_steps=steps, internal_batch_size=max(1, IG_TOKENS_PER_PASS // len(p.encoded.ids)))
        inp = TextTokenInput(p.model_text, tokenizer, baselines=0 if zero is None else zero)
        if zero is not None:
            # Captum's LLM input is a presence mask over tokens: 0 swaps a token for the input's `baselines` id.
            # Absent prompt-text tokens become the zeroed row, template tokens stay: kdviz's baseline. (Captum's
            # default swaps every token, template included, for token id 0, which is an ordinary token with a
            # non-zero embedding in most vocabularies.)
            present = inp.to_tensor().clone()
            present[0, list(p.encoded.content_positions)] = 0
            kwargs["baselines"] = present.to(llm.device)
    result = llm.attribute(inp, target=p.target_text, **kwargs)
    return result.seq_attr.detach().float().cpu()[list(p.encoded.content_positions)]


@contextlib.contextmanager
def zero_embedding_row(loaded: LoadedModel, avoid: set[int]) -> Iterator[int]:
    """Yields a token id whose embedding row is zeroed for the duration, so that a Captum baseline of that token
    is kdviz's zero-embedding baseline. The id occurs in none of `avoid`, so no real input changes."""
    weight = loaded.model.get_input_embeddings().weight
    token_id = next(i for i in range(weight.shape[0] - 1, -1, -1) if i not in avoid)
    saved = weight.data[token_id].clone()
    with torch.no_grad():
        weight.data[token_id] = 0
    try:
        yield token_id
    finally:
        with torch.no_grad():
            weight.data[token_id] = saved


@dataclass
class Measured:
    """Per-batch seconds of each path (Captum: per example) and the scores kept for the sanity check."""

    kdviz: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    captum: list[float] = field(default_factory=list)
    ixg: list[float] = field(default_factory=list)  # kdviz input_x_gradient, on Captum's examples (saliency only)
    kdviz_scores: list[torch.Tensor] = field(default_factory=list)  # for the sanity check, on Captum's examples
    captum_scores: list[torch.Tensor] = field(default_factory=list)
    captum_same_baseline: list[torch.Tensor] = field(default_factory=list)  # IG only: Captum given kdviz's baseline


def measure(loaded: LoadedModel, items: Sequence[Prepared], method: str, k: int, args: argparse.Namespace) -> Measured:
    """Times floor, kdviz and Captum batch by batch, interleaved, so that load from other processes on a shared
    machine hits all three alike. Captum runs on the batch's examples among the first `k`; for integrated
    gradients it runs a second time, untimed, with kdviz's baseline."""
    b, steps = args.batch_size, args.steps
    ig = method == "integrated_gradients"
    llm = captum_attributor(loaded, method)
    m = Measured()
    avoid = {i for p in items for i in p.encoded.ids + p.target_ids}
    # Every path runs inside the zeroed row, not only Captum's same-baseline pass: with tied embeddings (Qwen2.5)
    # the row is also that token's output logit, so all paths must read one and the same model.
    with zero_embedding_row(loaded, avoid) if ig else contextlib.nullcontext() as zero:
        for start in range(0, len(items), b):
            chunk = items[start : start + b]
            seconds, _ = timed(floor_pass, loaded, chunk)
            m.floor.append(seconds * (steps if ig else 1))
            seconds, sanity = timed(kdviz_scores, loaded, chunk, method, steps)
            m.kdviz.append(seconds)
            if not ig and start < k:  # Captum's method is grad x input: compare it with its exact kdviz twin
                seconds, sanity = timed(kdviz_scores, loaded, chunk[: k - start], "input_x_gradient", steps)
                m.ixg.append(seconds)
            for p, kd_score in zip(chunk[: max(0, k - start)], sanity, strict=False):
                seconds, captum = timed(captum_scores, llm, p, steps if ig else None)
                m.captum.append(seconds)
                m.captum_scores.append(captum)
                m.kdviz_scores.append(kd_score)
                if ig:
                    m.captum_same_baseline.append(captum_scores(llm, p, steps, zero))
            print(f"  [{method}: {start + len(chunk)}/{len(items)} questions]", file=sys.stderr, flush=True)
    return m


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    return torch.corrcoef(torch.stack([ra, rb]))[0, 1].item()


def agreement(kd: Sequence[torch.Tensor], cap: Sequence[torch.Tensor]) -> str:
    """Returns mean (min) cosine and Spearman between kdviz's and Captum's scores, and the largest relative gap."""
    cos = [
        torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0).item()
        for a, b in zip(kd, cap, strict=True)
    ]
    rho = [spearman(a, b) for a, b in zip(kd, cap, strict=True)]
    gap = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(kd, cap, strict=True))
    return (
        f"cosine mean {sum(cos) / len(cos):.4f} (min {min(cos):.4f}), Spearman mean {sum(rho) / len(rho):.4f} "
        f"(min {min(rho):.4f}), max |kdviz - captum| / max |captum| = {gap:.2e}"
    )


def print_table(title: str, rows: list[Timing]) -> None:
    width = max(len(r.path) for r in rows)
    print(f"\n{title}")
    print(f"  {'path':<{width}} {'examples':>8} {'seconds':>9} {'examples/s':>11} {'s/example':>10}")
    for r in rows:
        print(f"  {r.path:<{width}} {r.examples:>8} {r.seconds:>9.1f} {r.rate:>11.4f} {r.seconds / r.examples:>10.2f}")


def run_method(loaded: LoadedModel, items: Sequence[Prepared], method: str, args: argparse.Namespace) -> list[str]:
    """Times the three paths for one method, prints their table, and returns the sanity-check lines."""
    ig = method == "integrated_gradients"
    n = args.ig_n if ig else args.n
    k, b, steps = min(args.captum_limit, n), args.batch_size, args.steps
    m = measure(loaded, items[:n], method, k, args)
    kd = Timing(f"kdviz attribute_requests (batch {b}{f', {steps} steps' if ig else ''}, per_token)", n, sum(m.kdviz))
    cap_name = CAPTUM_METHOD[method] + (f", n_steps={steps}" if ig else "")
    cap = Timing(f"captum LLMGradientAttribution({cap_name}), per example", k, sum(m.captum))
    fl = Timing(f"floor: 1 fwd+bwd per batch of {b}" + (f" x {steps} steps" if ig else ""), n, sum(m.floor))
    rows = [kd, cap, fl]
    if m.ixg:
        rows.append(Timing("kdviz input_x_gradient (Captum's method; batch as above)", k, sum(m.ixg)))
    print_table(f"{method}  (Captum timed on the first {k} of {n} questions)", rows)
    print(f"  kdviz/captum = {kd.rate / cap.rate:.2f}x   floor/kdviz = {fl.rate / kd.rate:.2f}x")
    if k % b == 0:  # the first k/b kdviz batches hold exactly Captum's questions
        same = Timing("", k, sum(m.kdviz[: k // b]))
        print(
            f"  on the same {k} questions: kdviz {same.rate:.4f} examples/s, kdviz/captum = {same.rate / cap.rate:.2f}x"
        )
    if ig:
        print(f"  floor for IG = {steps} x one measured forward+backward of each batch")
    if not ig:
        return [
            f"input_x_gradient vs LayerGradientXActivation ({k} questions): {agreement(m.kdviz_scores, m.captum_scores)}"
        ]
    twin = "integrated_gradients vs LayerIntegratedGradients"
    return [
        f"{twin}, Captum's default baseline ({k} questions): {agreement(m.kdviz_scores, m.captum_scores)}",
        f"{twin}, same baseline ({k} questions): {agreement(m.kdviz_scores, m.captum_same_baseline)}",
    ]


def describe(loaded: LoadedModel, items: Sequence[Prepared], args: argparse.Namespace, load_s: float) -> None:
    params = sum(t.numel() for t in loaded.model.parameters()) / 1e6
    lens, tlens = [len(p.encoded.ids) for p in items], [len(p.target_ids) for p in items]
    print(f"model: {args.model} ({type(loaded.model).__name__}, {params:.1f}M params), loaded in {load_s:.1f} s")
    print(f"data: {args.data.resolve()}")
    print(
        f"{len(items)} questions, gold-answer targets: prompt {min(lens)}-{max(lens)} tokens (mean "
        f"{sum(lens) / len(lens):.1f}, chat template included), target {min(tlens)}-{max(tlens)} tokens (mean "
        f"{sum(tlens) / len(tlens):.2f})"
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    loaded = load_model(args.model)
    load_s = time.perf_counter() - wall
    print(device_line(loaded))
    print(f"load average (1, 5, 15 min) at start: {load_average()}")
    items = prepare(loaded, args.data, max(args.n if m == "saliency" else args.ig_n for m in args.methods))
    describe(loaded, items, args, load_s)

    floor_pass(loaded, items[: args.batch_size])  # warm-ups, untimed: first calls pay one-off setup costs
    kdviz_scores(loaded, items[:1], "saliency", args.steps)
    captum_scores(captum_attributor(loaded, "saliency"), items[0], None)
    checks = [line for method in args.methods for line in run_method(loaded, items, method, args)]
    print("\nsanity check: kdviz vs Captum whole-target scores on the prompt text's tokens")
    for line in checks:
        print(f"  {line}")
    print(f"\nload average at end: {load_average()} | total wall time {time.perf_counter() - wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
