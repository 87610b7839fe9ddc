"""AttnLRP (Achtibat et al., ICML 2024) through the optional `lxt` package, for Llama and Qwen2 decoders.

lxt's "efficient" AttnLRP is gradient × input with LRP rules built into the backward pass: RMSNorm's scale is a
constant (identity rule), the gated MLP's activation passes relevance through (identity rule) and its product
splits it evenly (uniform rule), and attention divides the gradient at query and key by 4 and at value by 2.

Licence: lxt is Clear BSD (copyright only, "No patent rights ... are granted"), and its README says LRP is
"a patented technology that can only be used free of charge for personal and scientific purposes": commercial use
needs a licence from the patent holder (Fraunhofer).

Why kdviz applies lxt's rules itself instead of calling `lxt.efficient.monkey_patch` (lxt 2.1):
- `import lxt.efficient` fails under transformers 5: it imports lxt's BERT support, which imports the removed
  `transformers.modeling_attn_mask_utils`. Its two leaf modules (rules, patches) import neither, so they are loaded
  under a bare `lxt.efficient` package.
- `monkey_patch` changes classes and module globals for the whole process (every Llama, and torch.nn.Dropout), and
  its attention patch replaces `ALL_ATTENTION_FUNCTIONS` with a plain dict, on which transformers 5 calls
  `.get_interface` (AttributeError). Here lxt's forwards go onto this model's own module instances, and its
  attention rule onto the q/k/v projections' outputs (the same gradient scaling: rotary embedding is linear), for
  one call under the model's lock; everything is undone after it, so other methods see the unchanged model.

What is attributed is the signed sum of the terms' *logits*, not their log-probabilities, as lxt recommends: LRP
conserves relevance from the value it starts at, and a logit is a sum of the inputs' relevances, while log p adds
-logsumexp over the vocabulary, for which LRP has no rule. A letter-against-letter contrast read at one position is
the same either way (the logsumexp cancels).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from kdviz.errors import InputError
from kdviz.lm.forward import Batch, embed, model_lock, target_logits

from .layout import Layout, Prepared, term_index, token_scores

MISSING_LXT = (
    "attnlrp needs the optional lxt package: pip install --no-deps lxt==2.1 "
    "(license: lxt is Clear BSD, but LRP is patented and free of charge only for personal and scientific, "
    "non-commercial use)"
)
# model_type -> (gated MLP class, RMSNorm class): the families lxt 2.1 maps for AttnLRP with these same rules.
FAMILIES = {"llama": ("LlamaMLP", "LlamaRMSNorm"), "qwen2": ("Qwen2MLP", "Qwen2RMSNorm")}
# lxt's wrap_attention_forward: the uniform rule over softmax(q·k)·v and q·k (q, k: 1/4) and over A·v (v: 1/2).
QKV_FACTORS = {"q_proj": 4, "k_proj": 4, "v_proj": 2}


def _lxt() -> tuple[types.ModuleType, types.ModuleType]:
    """Returns lxt's (rules, patches) modules, without running lxt.efficient's __init__ (see the module doc)."""
    spec = importlib.util.find_spec("lxt")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(MISSING_LXT)
    if "lxt.efficient" not in sys.modules:
        bare = types.ModuleType("lxt.efficient")
        bare.__path__ = [str(Path(next(iter(spec.submodule_search_locations))) / "efficient")]
        sys.modules["lxt.efficient"] = bare
    return importlib.import_module("lxt.efficient.rules"), importlib.import_module("lxt.efficient.patches")


@contextmanager
def attnlrp_rules(model) -> Iterator[None]:
    """Within the block, `model`'s backward pass computes AttnLRP relevance (as gradient × input); only this model's
    module instances change, and they are restored on exit. The caller holds the model's lock."""
    family = FAMILIES.get(getattr(model.config, "model_type", ""))
    if family is None:
        raise InputError(f"attnlrp supports {', '.join(FAMILIES)} decoders, not {model.config.model_type!r}")
    rules, patches = _lxt()
    mlp_class, norm_class = family
    replaced: list[tuple[torch.nn.Module, object]] = []  # (module, its own `forward` attribute before, if any)
    hooks = []
    try:
        for name, module in model.named_modules():
            kind = type(module).__name__
            if kind in (mlp_class, norm_class):
                new = patches.gated_mlp_forward if kind == mlp_class else patches.rms_norm_forward
                replaced.append((module, module.__dict__.get("forward")))
                module.forward = types.MethodType(new, module)
            elif name.rpartition(".")[2] in QKV_FACTORS and ".self_attn." in f".{name}":
                factor = QKV_FACTORS[name.rpartition(".")[2]]
                hooks.append(module.register_forward_hook(lambda m, i, out, f=factor: rules.divide_gradient(out, f)))
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for module, before in replaced:
            if before is None:
                del module.forward
            else:
                module.forward = before


def _term_logits(logits: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Returns each prompt's signed term logits [n, J] (zeros past a prompt's last term) from logits [R, T, V]."""
    row, pos, tok, sign = term_index(layout, logits.device)
    return logits[row, pos, tok].float() * sign


def attnlrp(loaded, batch: Batch, preps: list[Prepared], layout: Layout, steps: int, per_token: bool):
    """The `attnlrp` attribution method (signature of kdviz.attribution.methods.METHODS; `steps` is unused)."""
    with model_lock(loaded), attnlrp_rules(loaded.model), torch.enable_grad():
        x = (
            embed(loaded, batch.input_ids).detach().requires_grad_(True)
        )  # [R, L, D]: a contrast row repeats its prompt
        logits, _ = target_logits(loaded, batch, inputs_embeds=x)
        values = _term_logits(logits, layout)  # [n, J]
        n_terms = values.shape[1] if per_token else 0
        term_grads = [
            torch.autograd.grad(values[:, j].sum(), x, retain_graph=j < n_terms - 1)[0] for j in range(n_terms)
        ]
        total = torch.stack(term_grads).sum(0) if n_terms else torch.autograd.grad(values.sum(), x)[0]

    def relevance(grad: torch.Tensor) -> torch.Tensor:  # [R, L, D] -> [n, L]: LRP's relevance is gradient · input
        return token_scores("attnlrp", grad, x.detach(), layout)

    seq = relevance(total)
    matrix = torch.stack([relevance(g) for g in term_grads]) if term_grads else seq.new_zeros((0,) + seq.shape)
    results = []
    for b, prep in enumerate(preps):
        content = list(prep.encoded.content_positions)
        results.append((matrix[:, b, content][: len(layout.terms[b])], seq[b, content]))
    return results
