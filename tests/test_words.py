from kdviz.attribution.words import assign_tokens, merge_scores, token_groups, word_spans


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
