import pytest

from kdviz import Example, InputError, UnknownNameError, load_model, render
from kdviz.lm.prompts import MAX_PROMPT_CHARS, encode, encode_target, prompt_example, prompt_text

MCQ = Example("q1", "mcqa", "Where would you keep milk cold?", ("cupboard", "refrigerator", "oven"), "refrigerator")


def template_text(rendered):
    return [rendered.text[a:b] for a, b in rendered.template_spans]


def test_multiple_choice_prompt_lists_lettered_choices_and_marks_format_words():
    rendered = render(MCQ)
    assert rendered.text == (
        "Question: Where would you keep milk cold?\nChoices:\nA) cupboard\nB) refrigerator\nC) oven\nAnswer:"
    )
    assert template_text(rendered) == ["Question: ", "\nChoices:", "\nA)", "\nB)", "\nC)", "\nAnswer:"]


def test_nli_and_free_form_formats():
    nli = render(Example("n", "nli", "A person makes music.", (), "entailment", "A man plays a guitar."))
    assert nli.text.startswith("Premise: A man plays a guitar.\nHypothesis: A person makes music.")
    assert render(Example("q", "qa", "What is 2+2?")).text == "Question: What is 2+2?\nAnswer:"
    assert render("just text").text == "Question: just text\nAnswer:"
    assert render("just text", "raw").text == "just text"


@pytest.mark.parametrize(
    "example, fmt, message",
    [
        (Example("e", "qa", "   "), None, "empty"),
        (Example("e", "qa", "x" * (MAX_PROMPT_CHARS + 1)), None, "limit"),
        (Example("e", "mcqa", "q?", ("only one",)), None, "two choices"),
        (Example("e", "nli", "h"), None, "premise"),
    ],
)
def test_bad_prompts_get_a_clear_message(example, fmt, message):
    with pytest.raises(InputError, match=message):
        render(example, fmt)


def test_unknown_format_lists_the_choices():
    with pytest.raises(UnknownNameError, match="mcqa"):
        render(MCQ, "poem")


def test_chat_template_tokens_are_not_prompt_tokens(tiny):
    assert tiny.chat
    prompt = render(MCQ).text
    enc = encode(tiny, prompt)
    full = tiny.tokenizer.decode(list(enc.ids))
    assert "<|user|>" in full and "<|assistant|>" in full
    # the prompt tokens, and only them, spell the prompt text
    pieces = "".join(tiny.tokenizer.decode([enc.ids[i]]) for i in enc.content_positions)
    assert pieces == prompt
    assert all(prompt[a:b] for a, b in enc.content_offsets)
    assert len(enc.content_positions) < len(enc.ids)


def test_without_chat_template_the_target_follows_after_a_space():
    plain = load_model(__import__("kdviz").ModelSpec("tiny", chat=False))
    enc = encode(plain, "Question: q?\nAnswer:")
    assert enc.target_prefix == " "
    assert plain.tokenizer.decode(list(encode_target(plain, enc, "fridge"))) == " fridge"
    left_out = set(range(len(enc.ids))) - set(enc.content_positions)
    assert left_out and all(
        not plain.tokenizer.decode([enc.ids[i]]).strip() for i in left_out
    )  # only whitespace tokens


def test_a_typed_prompt_becomes_an_example():
    example, fmt = prompt_example("Where is milk kept?", ["fridge ", "", "oven"], " fridge ")
    assert fmt == "mcqa" and example == Example("prompt", "mcqa", "Where is milk kept?", ("fridge", "oven"), "fridge")
    assert prompt_example("the cat sat", gold="") == (Example("prompt", "qa", "the cat sat"), "raw")
    # before the last blank line: the context (an NLI premise), except in the raw format
    nli, _ = prompt_example("A man plays a guitar.\n\nA person makes music.", fmt="nli")
    assert (nli.task, nli.context, nli.question) == ("nli", "A man plays a guitar.", "A person makes music.")
    assert prompt_text(nli) == "A man plays a guitar.\n\nA person makes music."
    assert prompt_example("a\n\nb")[0].question == "a\n\nb"
    with pytest.raises(InputError, match="the gold answer 'c' is not one of the choices: a, b"):
        prompt_example("q?", ["a", "b"], "c")
    with pytest.raises(UnknownNameError, match="prompt format"):
        prompt_example("q?", fmt="poem")
    with pytest.raises(InputError, match="needs a premise"):
        prompt_example("just a hypothesis", fmt="nli")
