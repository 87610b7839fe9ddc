"""What the app reads and leaves behind (issue #15): served to other machines (--share, or a host other than
loopback) its path fields read only the workspace, the demo data and the --data-dir folders; on this machine only,
any path; and reopening a comparison does not grow the temp folder. Tiny models only."""

import tempfile
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError

import kdviz.ui
from kdviz.cli.main import main as cli_main
from kdviz.compare.report import write_report
from kdviz.compare.run import compare
from kdviz.data import demo_path, load_examples
from kdviz.errors import InputError
from kdviz.lm.models import load_model
from kdviz.workspace import Workspace, check_readable, confined_to

from .conftest import client_of

OUTSIDE = "is outside the folders this app may read"


def attribute(client, **fields):
    values = dict(
        model="tiny", method="saliency", target_mode="custom", prompt="the cat sat on the mat", choices="", gold="",
        custom_target="on the mat", fmt="auto", steps=4,
    )  # fmt: skip
    return client.predict(**{**values, **fields}, api_name="/attribute")


def save_tiny(folder: Path) -> Path:
    tiny = load_model("tiny")
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


def served(demo):
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    with client_of(demo, download_files=False) as client:
        yield client


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("paths")
    for name in ("ws", "data", "outside", "gradio-temp", "temp"):
        (root / name).mkdir()
    save_tiny(root / "outside" / "model")
    save_tiny(root / "ws" / "model")
    (root / "outside" / "secret.jsonl").write_text('{"prompt": "p", "target": "t"}\n', encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def confined(folders):
    app = kdviz.ui.build_app("tiny", workspace=folders / "ws", confine=True, data_dirs=[folders / "data"])
    yield from served(app)


@pytest.fixture(scope="module")
def report(folders) -> dict[str, Path]:
    """The files of the workspace's comparison "c1" (tiny against tiny-student on four examples)."""
    examples = load_examples(demo_path(), limit=4)
    comparison = compare("tiny", ["tiny-student"], examples, cache_dir=folders / "cache", batch_size=4)
    return write_report(comparison, Workspace(folders / "ws").comparison_dir("c1"))


@pytest.fixture(scope="module")
def open_app(folders, report):
    """An app served on this machine only, its gradio cache and temp folder of its own (to count what it leaves)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(folders / "gradio-temp"))
        patch.setattr(tempfile, "tempdir", str(folders / "temp"))
        yield from served(kdviz.ui.build_app("tiny", workspace=folders / "ws"))


# -- when the app confines its paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, share, others",
    [
        ("127.0.0.1", False, False), ("localhost", False, False), ("::1", False, False), ("127.0.0.2", False, False),
        ("127.0.0.1", True, True), ("0.0.0.0", False, True), ("192.168.1.20", False, True), ("my-box", False, True),
    ],
)  # fmt: skip
def test_an_app_serves_others_with_share_or_a_host_other_than_loopback(host, share, others, monkeypatch):
    built = []

    class Stub:
        def launch(self, **kw):
            pass

    monkeypatch.setattr(kdviz.ui, "build_app", lambda *args: built.append(args) or Stub())
    kdviz.ui.launch("tiny", host=host, share=share, data_dirs=["/data"])
    assert kdviz.ui.serves_others(host, share) is others and built[0][3:] == (others, ["/data"])


def test_kdviz_app_passes_its_data_folders_and_refuses_a_missing_one(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(kdviz.ui, "launch", lambda **kw: calls.append(kw))
    argv = ["app", "--host", "0.0.0.0", "--data-dir", str(tmp_path), "--data-dir", str(tmp_path)]
    assert cli_main(argv) == 0 and calls[0]["data_dirs"] == [str(tmp_path)] * 2 and calls[0]["host"] == "0.0.0.0"
    assert cli_main(["app", "--data-dir", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"error: --data-dir {tmp_path / 'none'}: no such folder\n"


def test_confinement_refuses_paths_outside_its_folders_and_links_out_of_them(tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir(), outside.mkdir()
    (inside / "link").symlink_to(outside)
    assert check_readable(outside / "x") == outside / "x"  # not confined: any path
    with confined_to([inside]):
        assert check_readable(inside / "a" / "b.jsonl") == inside / "a" / "b.jsonl"
        for path in (outside / "x", inside / ".." / "outside" / "x", inside / "link" / "x", "/etc/passwd"):
            with pytest.raises(InputError, match=f"^the path '.*' {OUTSIDE} \\({inside}\\)$"):
                check_readable(path)
        with pytest.raises(InputError, match=f"^the data file '{outside}/x.jsonl' {OUTSIDE}"):
            load_examples(outside / "x.jsonl")  # refused before it is even looked for
    assert check_readable(outside / "x") == outside / "x"  # the confinement ends with the block


def test_a_confined_app_reads_models_only_in_its_folders(confined, folders):
    with pytest.raises(AppError, match=f"^the model '{folders}/outside/model' {OUTSIDE} \\(.*{folders}/ws"):
        attribute(confined, model=str(folders / "outside" / "model"))
    *_, record = attribute(confined, model=str(folders / "ws" / "model"))
    assert record["model_name"] == str(folders / "ws" / "model")


def test_a_confined_app_reads_data_only_in_its_folders_also_in_background_jobs(confined, folders, rationale_export):
    train = dict(student="tiny-student", max_steps=1, batch_size=2, eval_every=0, eval_size=4, api_name="/train")
    secret = folders / "outside" / "secret.jsonl"
    with pytest.raises(AppError, match=f"^the training data '{secret}' {OUTSIDE}"):
        confined.predict(dataset=str(secret), name="outside", **train)
    given = folders / "data" / "rationales.jsonl"  # a --data-dir folder
    given.write_bytes((rationale_export / "rationales.jsonl").read_bytes())
    status, *_ = confined.predict(dataset=str(given), name="given", **train)
    assert status.startswith("**given** · completed · step 1/1")


# -- an app on this machine only -------------------------------------------------------------------------------


def test_an_app_on_this_machine_reads_any_path(open_app, folders):
    *_, record = attribute(open_app, model=str(folders / "outside" / "model"))
    assert record["model_name"] == str(folders / "outside" / "model")


def test_reopening_a_comparison_adds_nothing_to_the_temp_folders(open_app, folders, report):
    def temp_files() -> dict[str, int]:
        found = [p for name in ("gradio-temp", "temp") for p in (folders / name).rglob("*") if p.is_file()]
        return {str(p): p.stat().st_size for p in found}

    views = [open_app.predict(name="c1", filter_name="all", api_name="/open_comparison") for _ in range(3)]
    downloads = views[0][8]
    assert sorted(Path(d["path"]).name for d in downloads) == sorted(p.name for p in report.values())
    after_one = temp_files()
    assert len(after_one) == 3 and sum(after_one.values()) == sum(p.stat().st_size for p in report.values())
    assert all(view[8] == downloads for view in views)  # the same copies, handed out again
    open_app.predict(name="c1", filter_name="all", api_name="/open_comparison")
    assert temp_files() == after_one
