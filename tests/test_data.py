import json

import pytest

from kdviz import InputError, load_examples
from kdviz.data import demo_path, example_from_row

from .conftest import CQA_TRAIN


def test_demo_set_is_commonsenseqa_shaped():
    examples = load_examples(demo_path())
    assert len(examples) >= 30
    for ex in examples:
        assert ex.task == "mcqa" and len(ex.choices) == 5 and ex.answer in ex.choices
        assert ex.human_rationale and ex.human_rationale in ex.question


@pytest.mark.skipif(not CQA_TRAIN.exists(), reason="shared CommonsenseQA data not present")
def test_reads_the_real_commonsenseqa_file():
    examples = load_examples(CQA_TRAIN, limit=20)
    assert len(examples) == 20
    assert all(ex.task == "mcqa" and ex.answer in ex.choices for ex in examples)


def test_other_shapes_nli_free_form_and_letter_answers():
    nli = example_from_row({"premise": "A man plays.", "hypothesis": "Someone plays.", "label": 0}, 0)
    assert (nli.task, nli.context, nli.answer) == ("nli", "A man plays.", "entailment")
    qa = example_from_row({"question": "2+2?", "answer": "4"}, 1)
    assert (qa.task, qa.choices, qa.answer) == ("qa", (), "4")
    letter = example_from_row(
        {"question": "q?", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "B"}, 2
    )
    assert (letter.choices, letter.answer) == (("x", "y"), "y")


def write(tmp_path, text):
    path = tmp_path / "data.jsonl"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no examples"),
        ('{"question": "q"}\nnot json\n', "line 2: not valid JSON"),
        ('{"prompt": "q"}\n', "no 'question' field"),
        ('["a list"]\n', "expected a JSON object"),
        (json.dumps({"question": "q", "choices": ["a", "b"], "answer": "c"}) + "\n", "not one of its choices"),
    ],
)
def test_bad_files_get_a_message_naming_the_problem(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        load_examples(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such data file"):
        load_examples(tmp_path / "nope.jsonl")


def test_csv_and_parquet_with_a_column_mapping(tmp_path):
    import pandas as pd

    from kdviz.data import split_examples

    frame = pd.DataFrame(
        {
            "prompt": ["Where is milk kept cold?", "What do cats chase?"],
            "options": ['["fridge", "oven"]', "mice | dogs"],
            "label": ["fridge", "mice"],
        }
    )
    frame.to_csv(tmp_path / "d.csv", index=False)
    mapping = {"question": "prompt", "choices": "options", "answer": "label"}
    csv = load_examples(tmp_path / "d.csv", columns=mapping)
    assert [e.choices for e in csv] == [("fridge", "oven"), ("mice", "dogs")] and csv[1].answer == "mice"
    frame.assign(options=[["fridge", "oven"], ["mice", "dogs"]]).to_parquet(tmp_path / "d.parquet")
    assert load_examples(tmp_path / "d.parquet", columns=mapping) == csv
    with pytest.raises(InputError, match="column 'question_text'"):
        load_examples(tmp_path / "d.csv", columns={"question": "question_text"})
    train, valid = split_examples(csv * 5, 0.2, seed=3)
    assert len(valid) == 2 and len(train) == 8 and split_examples(csv * 5, 0.2, seed=3) == (train, valid)


def test_unsupported_or_unreadable_files_and_offline_hub(tmp_path):
    (tmp_path / "d.txt").write_text("q")
    with pytest.raises(InputError, match="unsupported file type"):
        load_examples(tmp_path / "d.txt")
    (tmp_path / "d.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="cannot be read as PARQUET"):
        load_examples(tmp_path / "d.parquet")
    with pytest.raises(InputError, match="could not load dataset 'tau/commonsense_qa'.*HF_HUB_OFFLINE"):
        load_examples("hf:tau/commonsense_qa")


def test_one_seeded_split_for_validation_and_training():
    from kdviz.data import hold_out, split_examples

    examples = load_examples(demo_path())
    train, valid = split_examples(examples, 0.25, seed=3)
    assert len(valid) == 10 and (train, valid) == hold_out(examples, 10, seed=3)
    assert sorted(e.id for e in train + valid) == sorted(e.id for e in examples) and not set(train) & set(valid)
    assert [e.id for e in valid] != [e.id for e in split_examples(examples, 0.25, seed=4)[1]]  # the seed matters
    with pytest.raises(InputError, match="between 0 and 1"):
        split_examples(examples, 1.0)


def test_one_reader_per_file_type_for_examples_and_training_data(tmp_path):
    from kdviz.data import rows_of
    from kdviz.distill.data import load_train_examples

    rows, name = rows_of(write(tmp_path, '{"question": "q?", "answer": "a"}\n\n{"question": "r?"}\n'))
    assert (list(rows), name) == ([{"question": "q?", "answer": "a"}, {"question": "r?"}], "data.jsonl")
    (tmp_path / "d.txt").write_text("q")
    for read in (load_examples, load_train_examples):
        with pytest.raises(InputError, match=r"d\.txt: unsupported file type '\.txt'"):
            read(tmp_path / "d.txt")
        with pytest.raises(InputError, match="no such data file"):
            read(tmp_path / "nope.csv")
    assert [t.example for t in load_train_examples(demo_path())] == load_examples(demo_path())


SHARED = CQA_TRAIN.parent.parent
FIRST_ROWS = {  # the first row of each shared dataset: (task, answer, teacher_answer, answer_value, rationale start)
    "cqa": ("mcqa", "math problem", "math problem", None, "The answer must be something that has to do with"),
    "anli1": ("nli", "contradiction", "contradiction", None, "Linguistics involves an analysis of language form"),
    "esnli": ("nli", "neutral", "neutral", None, "The to go packages are not necessarily from lunch."),
    "svamp": ("qa", "( 84.0 / 2.0 )", "84 / 2", 42.0, "Luke scored 84 points after 2 rounds."),
}


@pytest.mark.parametrize("name", list(FIRST_ROWS))
def test_each_shared_dataset_loads_with_its_teacher_fields(name):
    path = SHARED / name / "train.jsonl"
    if not path.exists():
        pytest.skip(f"shared {name} data not present")
    task, answer, teacher_answer, value, rationale = FIRST_ROWS[name]
    first = load_examples(path, limit=3)[0]
    assert (first.task, first.answer, first.teacher_answer, first.answer_value) == (
        task,
        answer,
        teacher_answer,
        value,
    )
    assert first.teacher_rationale.startswith(rationale)
    if task == "nli":  # the shared NLI files name the gold label "answer", not "label"
        assert first.context and first.choices == ("entailment", "neutral", "contradiction")
    human = {"cqa": '"there are 10 apples', "anli1": "Linguistics in", "esnli": "The to go packages may not be from"}
    assert (first.human_rationale or "").startswith(human.get(name, "")) and bool(first.human_rationale) == (
        name in human
    )


def test_teacher_fields_of_a_row_a_missing_teacher_answer_and_bad_values():
    row = {"question": "2+2?", "answer": "( 2.0 + 2.0 )", "answer_value": 4, "teacher_answer": None,
           "teacher_rationale": "2 + 2 = 4. The answer is (2 + 2)."}  # fmt: skip
    ex = example_from_row(row, 0)
    assert (ex.teacher_answer, ex.answer_value, ex.teacher_rationale) == (None, 4.0, row["teacher_rationale"])
    assert example_from_row({"question": "q?", "answer": "a"}, 0).teacher_rationale is None
    with pytest.raises(InputError, match="record 0: 'answer_value' must be a number"):
        example_from_row({**row, "answer_value": "four"}, 0)
    with pytest.raises(InputError, match="record 0: 'teacher_rationale' must be text, not a list"):
        example_from_row({**row, "teacher_rationale": ["a"]}, 0)
