"""kdviz's integrated gradients against Captum's `LLMGradientAttribution(LayerIntegratedGradients)`.

The two compute the same integral with the same Gauss-Legendre nodes and weights; they differ only by the baseline.
kdviz starts the path from a zero embedding at the prompt text's tokens and keeps the real embeddings of the
chat template, special tokens and target. Captum's default swaps *every* prompt token (template included) for
token id 0 and starts from that token's embedding. On the tiny model token 0 is <pad>, whose row Llama initialises to
zero (`padding_idx`), so without a chat template the baselines coincide. A real model's token 0 is an ordinary
token (Qwen2.5: "!") with a non-zero embedding, and its chat template is long: bench/README.md's loose agreement.
"""

import pytest
import torch

from kdviz import AttributionRequest, ModelSpec, attribute_requests, load_model
from kdviz.lm.models import LoadedModel
from kdviz.lm.prompts import encode, encode_target
from kdviz.lm.tiny import build_tiny

captum = pytest.importorskip("captum.attr")

STEPS = 16
PROMPT, TARGET = "Where would you keep milk cold?", "refrigerator"  # a 3-token target: later tokens see earlier ones


def kdviz_ig(loaded: LoadedModel) -> torch.Tensor:
    """kdviz's whole-target IG scores [n_content]."""
    (attr,) = attribute_requests(loaded, [AttributionRequest(PROMPT, TARGET)], "integrated_gradients", steps=STEPS)
    return torch.tensor(attr.seq_scores, dtype=torch.float64)


def captum_ig(loaded: LoadedModel, token_id: int = 0, content_only: bool = False) -> torch.Tensor:
    """Captum's whole-target IG scores on kdviz's content tokens [n_content]. The baseline swaps every prompt token
    (Captum's default), or only the prompt text's (`content_only`), for `token_id` (Captum's default: 0)."""
    enc = encode(loaded, PROMPT)
    content = list(enc.content_positions)
    inp = captum.TextTokenInput(loaded.tokenizer.decode(list(enc.ids)), loaded.tokenizer, baselines=token_id)
    assert inp.inp_tensor[0].tolist() == list(enc.ids)  # Captum reads exactly kdviz's tokens
    present = inp.to_tensor().clone()  # Captum's input is a presence mask: 0 swaps the token for `token_id`
    present[0, content if content_only else slice(None)] = 0
    llm = captum.LLMGradientAttribution(
        captum.LayerIntegratedGradients(loaded.model, loaded.model.get_input_embeddings()), loaded.tokenizer
    )
    target = torch.tensor(encode_target(loaded, enc, TARGET))
    result = llm.attribute(inp, target=target, baselines=present, n_steps=STEPS, method="gausslegendre")
    return result.seq_attr[content].detach().double()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


@pytest.fixture(scope="module")
def qwen_like() -> tuple[LoadedModel, int]:
    """A fresh tiny model shaped like the real teacher's case: chat template on, token 0 with a non-zero
    embedding; and the id of a token (in no prompt) whose row is zeroed, to give Captum kdviz's baseline."""
    model, tokenizer = build_tiny("tiny")  # its own copy: the session's cached tiny model stays untouched
    weight = model.get_input_embeddings().weight
    zero_id = weight.shape[0] - 1
    with torch.no_grad():
        weight[0] = weight[1:].std() * torch.randn(weight.shape[1], generator=torch.Generator().manual_seed(0))
        weight[zero_id] = 0
    loaded = LoadedModel(model=model, tokenizer=tokenizer, spec=ModelSpec("tiny"), device="cpu", chat=True)
    assert zero_id not in encode(loaded, PROMPT).ids
    return loaded, zero_id


def test_ig_equals_captums_default_where_the_baselines_coincide():
    # Without a chat template every prompt token is prompt text, and tiny's token 0 (<pad>) embeds to zero: Captum's
    # default baseline is then kdviz's, and so are the scores.
    loaded = load_model(ModelSpec("tiny", chat=False))
    assert loaded.tokenizer.pad_token_id == 0 and not loaded.model.get_input_embeddings().weight[0].any()
    ours, theirs = kdviz_ig(loaded), captum_ig(loaded)
    assert cosine(ours, theirs) > 0.9999
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("content_only", "zero_row", "agrees"),
    [
        (False, False, False),  # Captum's default: token 0 everywhere (the template moves, from a non-zero row)
        (True, False, False),  # template kept, but the prompt text starts from token 0's non-zero embedding
        (False, True, False),  # zero start, but the template moves too
        (True, True, True),  # kdviz's baseline: the prompt text's tokens from zero, the template kept
    ],
)
def test_only_kdvizs_baseline_gives_captum_kdvizs_scores(qwen_like, content_only, zero_row, agrees):
    loaded, zero_id = qwen_like
    ours, theirs = kdviz_ig(loaded), captum_ig(loaded, zero_id if zero_row else 0, content_only)
    if agrees:
        assert cosine(ours, theirs) > 0.9999
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    else:  # measured 0.48, 0.68 and 0.54: far from agreement, so the baseline is the whole difference
        assert cosine(ours, theirs) < 0.9


def test_each_ig_record_says_how_far_its_scores_are_from_the_path_integral(tiny):
    from kdviz import Example, attribute
    from kdviz.attribution.layout import make_layout
    from kdviz.attribution.methods import _prepare, _term_values
    from kdviz.lm.forward import embed, make_batch

    question = Example(id="q", task="mcqa", question="Where would you keep milk so that it stays cold?",
                       choices=("oven", "refrigerator", "cupboard"), answer="refrigerator")  # fmt: skip
    by_steps = {s: attribute(tiny, question, method="integrated_gradients", steps=s, predict="cloze") for s in (4, 64)}
    attr = by_steps[64]
    # The integral, computed here apart: the objective at the input minus at the zero-embedding baseline
    prep = _prepare(tiny, AttributionRequest(attr.prompt, attr.target))
    layout = make_layout([(prep.encoded.ids, prep)])
    batch = make_batch(tiny, layout.items)
    with torch.no_grad():
        x = embed(tiny, batch.input_ids)
        zeroed = x.clone()
        zeroed[0, list(prep.encoded.content_positions)] = 0
        ends = [_term_values(tiny, batch, layout, inputs_embeds=e)[0].sum().item() for e in (x, zeroed)]
    assert attr.integral == pytest.approx(ends[0] - ends[1], rel=1e-5)
    assert by_steps[4].integral == pytest.approx(attr.integral, rel=1e-6)  # the integral does not depend on steps
    assert by_steps[4].completeness_error > 0.3 and attr.completeness_error < 1e-4  # 4 steps miss, 64 converge
    assert sum(attr.seq_scores) == pytest.approx(attr.integral, rel=1e-4)
    other = attribute(tiny, question, method="saliency", predict="cloze")
    assert (other.integral, other.completeness_error) == (None, None)  # only IG has a path integral
    from kdviz.viz.attribution import prediction_markdown

    shown = prediction_markdown(by_steps[4])  # the Teacher panel's answer box
    assert f"(error {by_steps[4].completeness_error:.0%})" in shown and "**Completeness**" not in prediction_markdown(
        other
    )
