"""bench/train.py runs end to end on the tiny student: both loops train on the same batches and are timed."""

import importlib.util
import re
import sys

from kdviz.data import demo_path

from .conftest import REPO


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "bench" / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_train_times_both_loops_on_the_same_batches(capsys):
    bench = _bench_module()
    argv = ["--student", "tiny-student", "--data", str(demo_path()), "--steps", "3", "--batch-size", "2"]
    assert bench.main([*argv, "--warmup", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = {
        name: [float(x) for x in re.search(rf"{re.escape(name)}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", out).groups()]
        for name in ("kdviz finetune (standard)", "transformers Trainer")
    }
    for seconds, steps_per_s, samples_per_s in rows.values():
        assert seconds > 0 and steps_per_s > 0
        assert abs(samples_per_s - 2 * steps_per_s) < 0.01 * samples_per_s + 1e-3  # batch size 2
    assert float(re.search(r"kdviz/Trainer = ([\d.]+)x", out).group(1)) > 0
    # Same weights, same batches, same loss: the mean training losses agree (the optimizers differ only in fusion).
    losses = [float(x) for x in re.findall(r" (\d+\.\d{6})\n", out)]
    assert len(losses) == 2 and abs(losses[0] - losses[1]) < 1e-3 * losses[0]
