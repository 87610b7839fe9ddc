"""Data-parallel rationale builds (`torchrun`/`accelerate launch -m kdviz rationales`): the share each process takes,
the shared cache's locked appends, and a two-process build on CPU that equals a one-process build."""

import json
import multiprocessing
import os
import shutil
import subprocess

import pytest

from kdviz.config import ModelSpec
from kdviz.errors import InputError
from kdviz.rationales.parallel import Shard, current_shard, rank_spec
from kdviz.records import Example, RecordLog


def test_processes_take_whole_batches_in_turn_and_together_cover_every_example():
    items = list(range(10))
    first, second = Shard(0, 2, 0).share(items, 3), Shard(1, 2, 1).share(items, 3)
    assert first == [0, 1, 2, 6, 7, 8] and second == [3, 4, 5, 9]  # batch j goes to process j % 2
    assert sorted(first + second) == items


LAUNCH = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511"}


def test_the_launchers_variables_give_this_processs_shard(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert current_shard() is None  # a plain `kdviz rationales`
    for name, value in LAUNCH.items():
        monkeypatch.setenv(name, value)
    assert current_shard() == Shard(rank=1, world=2, local_rank=1)
    monkeypatch.delenv("MASTER_ADDR")
    with pytest.raises(InputError, match="WORLD_SIZE=2 but MASTER_ADDR is not set right"):
        current_shard()


def test_several_processes_refuse_a_device_map():
    assert rank_spec(ModelSpec("x", device_map="auto"), None).device_map == "auto"  # one process: allowed
    with pytest.raises(InputError, match="cannot run in several processes"):
        rank_spec(ModelSpec("x", device_map="auto"), Shard(0, 2, 0))
    assert rank_spec(ModelSpec("x", device="cpu"), Shard(1, 2, 1)).device == "cpu"


def _append_batches(path: str, writer: int) -> None:
    log = RecordLog(path, Example, "example")
    question = f"writer {writer} " + "x" * 20_000  # a line larger than one buffered write
    for batch in range(20):
        log.add((f"{writer}-{batch}-{n}", Example(id=str(n), task="qa", question=question)) for n in range(3))


def test_processes_appending_to_one_cache_never_interleave_their_lines(tmp_path):
    path = tmp_path / "cache.jsonl"
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each, as under torchrun
    writers = [context.Process(target=_append_batches, args=(str(path), w)) for w in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0, 0]
    lines = path.read_text().splitlines()
    assert len(lines) == 3 * 20 * 3 and all(json.loads(line)["key"] for line in lines)  # every line whole
    assert len(RecordLog(path, Example, "example").load()) == 180


def _records(path):
    """The records of a JSONL file, without the time each was made."""
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    for row in rows:
        row["provenance"].pop("created")
    return rows


def test_a_two_process_build_writes_what_one_process_builds(tmp_path):
    """The launch path of `torchrun`/`accelerate launch` on several GPUs, here two CPU processes (gloo). (On CPUs,
    `accelerate launch --cpu` starts one process unless it is given MPI, so torchrun launches them.)"""
    from kdviz.cli.main import main
    from kdviz.data import demo_path
    from kdviz.rationales.curation import CurationStore

    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    settings = ["--teacher", "tiny", "--data", str(demo_path()), "--limit", "17", "--batch-size", "3"]
    assert (
        main(["rationales", *settings, "--cache-dir", str(tmp_path / "one"), "--out", str(tmp_path / "one.jsonl")])
        == 0
    )
    args = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "kdviz", "rationales", *settings, "--cache-dir",
            str(tmp_path / "two"), "--out", str(tmp_path / "two.jsonl"), "--workspace", str(tmp_path / "ws"), "--name",
            "b"]  # fmt: skip
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1 and json.loads(results[0])["n"] == 17  # one result line, from the first process
    assert "17 records (0 from the cache)" in done.stderr
    one = _records(tmp_path / "one.jsonl")
    assert _records(tmp_path / "two.jsonl") == one and len(one) == 17  # faithfulness included
    assert all(row["faithfulness"] is not None for row in one)
    assert _records(CurationStore(tmp_path / "ws" / "builds" / "b").path) == one  # the build the app opens
    cache = next((tmp_path / "two").glob("*.jsonl"))
    assert len(cache.read_text().splitlines()) == 17  # each example attributed once, by one of the processes
