"""The attribution benchmarks run end to end on the tiny model: the rationale method study (resumed from its caches,
and its table rebuilt without a model), the click benchmark and the integration-steps benchmark."""

import importlib.util
import json
import re
import sys

from kdviz.data import demo_path

from .conftest import REPO


def _bench(name: str):
    sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _table(markdown: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("| ")]


def test_the_method_study_measures_every_setting_resumes_and_rebuilds_its_table(tmp_path, capsys):
    study = _bench("rationale_quality")
    argv = ["--model", "tiny", "--data", str(demo_path()), "--n", "4", "--methods", "saliency", "attention",
            "--ks", "2", "3", "--steps", "2", "--out", str(tmp_path)]  # fmt: skip
    assert study.main(argv) == 0
    first = (tmp_path / "table.md").read_text()
    rows = _table(first)[1:]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (m, k, s) for m in ("saliency", "attention") for s in ("question", "all") for k in ("2", "3")
    ]
    assert all(re.fullmatch(r"-?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]", r[10]) for r in rows)  # gain with its CI
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert {m: n for m, (_, n) in timings.items()} == {"saliency": 4, "attention": 4}
    capsys.readouterr()
    assert study.main(argv) == 0  # everything cached: nothing attributed again, the same table
    assert "done in an earlier run" in capsys.readouterr().out and (tmp_path / "table.md").read_text() == first
    assert json.loads((tmp_path / "timings.json").read_text()) == timings
    (tmp_path / "table.md").unlink()
    assert study.main([*argv, "--table-only"]) == 0  # from the stored cells, no model
    assert (tmp_path / "table.md").read_text() == first


def test_the_click_benchmark_prints_a_row_per_method_with_its_floor_units(capsys):
    click = _bench("click_cost")
    argv = ["--model", "tiny", "--data", str(demo_path()), "--n", "2", "--slow-n", "1", "--steps", "4", "--methods",
            "saliency", "feature_ablation"]  # fmt: skip
    assert click.main(argv) == 0
    rows = {r[0]: r for r in _table(capsys.readouterr().out)[1:]}
    assert set(rows) == {"saliency", "feature_ablation"}
    assert (rows["saliency"][1], rows["feature_ablation"][1]) == ("2", "1")  # questions timed
    assert all(re.fullmatch(r"\d+\.\d\d×", r[4]) and r[7] != "—" for r in rows.values())  # floor units, Captum timed


def test_the_steps_benchmark_finds_the_tiny_models_integral_with_enough_steps(capsys):
    steps = _bench("ig_steps")
    assert steps.main(["--model", "tiny", "--data", str(demo_path()), "--n", "3", "--steps", "2", "64"]) == 0
    rows = {int(r[0]): r for r in _table(capsys.readouterr().out)[1:]}
    error = {s: float(r[1].split()[0]) for s, r in rows.items()}
    assert error[64] < 0.01 < error[2]  # 2 nodes miss the path integral, 64 find it (on the smooth tiny model)
    assert rows[64][2].startswith("1.0000") and rows[64][3] == "1.000"  # the reference against itself
