"""kill -9 in the middle of the two long CLI jobs: the rerun (rationales) or `--resume` (train) loses nothing and
repeats nothing (issue #15)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kdviz.cli.main import main
from kdviz.data import demo_path, load_examples
from kdviz.distill.metrics import EvalRow, StepRow
from kdviz.distill.runs import read_rows, read_status, run_info
from kdviz.rationale_records import RationaleRecord
from kdviz.rationales.build import example_key
from kdviz.records import load_jsonl


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, "-m", "kdviz", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip


def _kill_when(process: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILLs the process as soon as `ready()` holds; fails if it ended first (the kill would test nothing)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the command ended before the kill: {process.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "the command made no progress to kill in"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def _cache_keys(cache: Path) -> list[str]:
    keys = []
    for path in cache.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                keys.append(json.loads(line)["key"])
            except (json.JSONDecodeError, KeyError):  # the line the kill cut short
                continue
    return keys


def test_rationales_killed_mid_run_then_rerun_gives_every_record_once(tmp_path, capsys):
    data = str(demo_path())
    args = ["rationales", "--teacher", "tiny", "--data", data, "--limit", "16", "--batch-size", "1"]
    killed = _start([*args, "--cache-dir", "cache", "--out", "r.jsonl"], tmp_path)
    _kill_when(killed, lambda: len(_cache_keys(tmp_path / "cache")) >= 1)
    assert not (tmp_path / "r.jsonl").exists()
    done_at_kill = len(_cache_keys(tmp_path / "cache"))
    assert 1 <= done_at_kill < 16

    assert main([*args, "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "r.jsonl")]) == 0
    assert f"({done_at_kill} from the cache)" in capsys.readouterr().err  # the rerun resumed, recomputing nothing
    keys = _cache_keys(tmp_path / "cache")
    assert sorted(keys) == sorted(example_key(e) for e in load_examples(data, limit=16))  # each example once

    assert main([*args, "--cache-dir", str(tmp_path / "whole"), "--out", str(tmp_path / "whole.jsonl")]) == 0
    resumed, whole = (load_jsonl(tmp_path / name, RationaleRecord) for name in ("r.jsonl", "whole.jsonl"))
    assert [r.id for r in resumed] == [e.id for e in load_examples(data, limit=16)]
    assert [_undated(r) for r in resumed] == [_undated(r) for r in whole]  # scores, selections, faithfulness


def _undated(record: RationaleRecord) -> dict:
    data = record.to_dict()
    del data["provenance"]["created"]  # when the record was built: the one field two runs never share
    return data


def test_train_killed_after_a_checkpoint_resumes_to_max_steps_logging_each_step_once(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--student", "tiny-student", "--data", str(demo_path()), "--max-steps", "30", "--save-every",
            "3", "--eval-every", "10", "--eval-size", "4", "--batch-size", "4"]  # fmt: skip
    killed = _start([*args, "--out", str(run)], tmp_path)
    _kill_when(killed, lambda: (run / "resume" / "point.json").exists())
    assert run_info(run).status == "interrupted"
    assert not (run / "checkpoint").exists()  # the model is written at the end: resume/ is all there is

    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"resuming {run} at step " in err
    rows = read_rows(run)
    steps = [r.step for r in rows if isinstance(r, StepRow)]
    assert steps == list(range(1, 31))  # each step once: the ones after the resume point were cut and redone
    assert [r.step for r in rows if isinstance(r, EvalRow)] == [0, 10, 20, 30]
    status = read_status(run)
    assert (status.status, status.step) == ("completed", 30) and (run / "checkpoint" / "config.json").is_file()
    assert not (run / "resume").exists()
