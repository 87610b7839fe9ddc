from kdviz.attribution.words import assign_tokens, merge_scores, normalize_word, token_groups, word_spans
from kdviz.compare.stats import align_words
from kdviz.rationales.select import normalize, words_of


def test_subword_pieces_merge_into_whitespace_words():
    text = "Where keep milk cold?"
    spans = word_spans(text)
    assert [text[a:b] for a, b in spans] == ["Where", "keep", "milk", "cold?"]
    # "Where" | " keep" (offset includes the space) | "mi" "lk" | "cold" "?"
    tokens = [(0, 5), (5, 10), (11, 13), (13, 15), (16, 20), (20, 21)]
    owners = assign_tokens(tokens, spans)
    assert owners == [0, 1, 2, 2, 3, 3]
    assert merge_scores([1, 2, 3, 4, 5, 6], owners, 4) == [1, 2, 7, 11]
    assert token_groups(owners, 4) == [[0], [1], [2, 3], [4, 5]]


def test_whitespace_only_tokens_belong_to_no_word():
    spans = word_spans("a\n\nb")
    assert assign_tokens([(0, 1), (1, 3), (3, 4)], spans) == [0, -1, 1]
    assert merge_scores([1.0, 5.0, 2.0], [0, -1, 1], 2) == [1.0, 2.0]


def test_one_normaliser_for_rationale_overlap_and_cross_model_alignment():
    # Issue #11: «milk» was "milk" for rationale overlap but "«milk»" when two models' prompts were aligned.
    assert normalize_word("«Milk»") == normalize_word("“milk”") == normalize_word("milk…") == "milk"
    assert normalize_word("—") == "" and normalize_word("don't") == "don't"  # inner punctuation stays
    assert normalize("«milk»") == "milk" and words_of("«milk» stays") == {"milk", "stays"}
    pairs = align_words(["keep", "«milk»", "cold"], [False] * 3, ["keep", "milk", "cold?"], [False] * 3)
    assert pairs == [(0, 0), (1, 1), (2, 2)]


def test_numbers_are_compared_by_value_in_one_spelling():
    # SVAMP's gold "( 84.0 / 2.0 )" against a question that says "84 points": the same word for overlap statistics
    assert [normalize_word(w) for w in ("84.0", "(84.0", "84.", "84", "1,200", "2.50", "3.14159")] == [
        "84", "84", "84", "84", "1200", "2.5", "3.14159",
    ]  # fmt: skip
    assert normalize_word("Apple,") == "apple" and normalize_word("B2B") == "b2b"  # words stay words
