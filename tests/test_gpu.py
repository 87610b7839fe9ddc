"""On a CUDA device (`pytest -m gpu`, run by bench/gpu.sh): the tiny models attribute and train there as on the CPU.
Skipped where torch sees no GPU."""

from __future__ import annotations

import pytest
import torch

import kdviz
from kdviz.config import ModelSpec
from kdviz.records import Example

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

EXAMPLE = Example(
    "q1", "mcqa", "Where would you keep milk cold?", ("cupboard", "refrigerator", "oven"), "refrigerator"
)


@pytest.mark.parametrize("method", ["input_x_gradient", "integrated_gradients"])
def test_tiny_model_on_cuda_attributes_as_on_cpu(method):
    scores = {}
    for device in ("cpu", "cuda"):
        loaded = kdviz.load_model(ModelSpec("tiny", device=device, dtype="float32"))
        assert loaded.device.startswith(device)
        result = kdviz.attribute(loaded, EXAMPLE, method=method, target_mode="gold")
        scores[device] = (result.input_tokens, torch.tensor(result.seq_scores))
    assert scores["cuda"][0] == scores["cpu"][0]  # the same prompt, token for token
    # fp32 on both; the GPU's kernels sum in another order, so agreement is to rounding, not bit for bit
    torch.testing.assert_close(scores["cuda"][1], scores["cpu"][1], rtol=1e-3, atol=1e-5)


def test_tiny_student_trains_on_cuda(tmp_path):
    from kdviz.config import TrainConfig
    from kdviz.distill.loop import finetune

    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(f'{{"id": "{i}", "question": "Where is milk kept {i}?", "choices": ["fridge", '
                              f'"oven"], "answer": "fridge"}}' for i in range(8)) + "\n")  # fmt: skip
    config = TrainConfig(data=str(data), out=str(tmp_path / "run"), student="tiny-student", max_steps=3,
                         batch_size=4, eval_every=0, eval_size=2, device="cuda")  # fmt: skip
    losses = []
    result = finetune(config, on_metrics=lambda row: losses.append(row.loss) if hasattr(row, "loss") else None)
    assert result.status == "completed" and result.steps == 3
    assert len(losses) == 3 and torch.isfinite(torch.tensor(losses)).all()
