"""Properties of the distillation losses: zero where they must be, closed forms, limits, masking."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdviz.distill import losses


def _logits(seed: int, shape=(2, 3, 7)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


def test_cross_entropy_matches_torch_on_real_tokens_and_ignores_padding():
    logits, targets = _logits(0), torch.randint(0, 7, (2, 3), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    expected = F.cross_entropy(logits[mask.bool()], targets[mask.bool()])
    assert losses.masked_cross_entropy(logits, targets, mask).item() == pytest.approx(expected.item(), abs=1e-6)
    scrambled = logits.clone()
    scrambled[1, 1:] = 100.0  # whatever the model says at padding does not count
    assert losses.masked_cross_entropy(scrambled, targets, mask).item() == pytest.approx(expected.item(), abs=1e-6)


def test_cross_entropy_limits():
    targets, mask = torch.tensor([[2, 5]]), torch.ones(1, 2)
    uniform = torch.zeros(1, 2, 7)
    assert losses.masked_cross_entropy(uniform, targets, mask).item() == pytest.approx(math.log(7), abs=1e-6)
    certain = F.one_hot(targets, 7).float() * 50
    assert losses.masked_cross_entropy(certain, targets, mask).item() < 1e-6


@pytest.mark.parametrize("divergence", [losses.forward_kl, losses.jensen_shannon])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_divergences_are_zero_for_identical_distributions_and_positive_otherwise(divergence, temperature):
    mask = torch.ones(2, 3)
    a, b = _logits(2), _logits(3)
    assert divergence(a, a, mask, temperature).item() == pytest.approx(0.0, abs=1e-6)
    assert divergence(a, a + 3.0, mask, temperature).item() == pytest.approx(0.0, abs=1e-5)  # softmax shift
    assert divergence(a, b, mask, temperature).item() > 1e-3


def test_kl_gradient_vanishes_when_the_student_equals_the_teacher():
    teacher = _logits(4)
    student = teacher.clone().requires_grad_(True)
    losses.forward_kl(student, teacher, torch.ones(2, 3)).backward()
    assert student.grad.abs().max().item() < 1e-6


def test_forward_kl_closed_form_and_direction():
    p, q = torch.tensor([0.9, 0.1]), torch.tensor([0.5, 0.5])
    teacher, student, mask = p.log().view(1, 1, 2), q.log().view(1, 1, 2), torch.ones(1, 1)
    kl_pq = (p * (p / q).log()).sum().item()
    assert losses.forward_kl(student, teacher, mask).item() == pytest.approx(kl_pq, abs=1e-6)
    # Forward KL is KL(teacher || student), not the reverse.
    assert losses.forward_kl(teacher, student, mask).item() != pytest.approx(kl_pq, abs=1e-3)


def test_jsd_is_symmetric_and_bounded_by_ln2():
    mask = torch.ones(2, 3)
    a, b = _logits(5), _logits(6)
    assert losses.jensen_shannon(a, b, mask).item() == pytest.approx(losses.jensen_shannon(b, a, mask).item())
    disjoint_a = torch.tensor([[[60.0, 0.0]]])
    disjoint_b = torch.tensor([[[0.0, 60.0]]])
    value = losses.jensen_shannon(disjoint_a, disjoint_b, torch.ones(1, 1)).item()
    assert value == pytest.approx(math.log(2), abs=1e-4)
    assert losses.jensen_shannon(a, b, mask).item() <= math.log(2)


def test_temperature_squared_scaling_and_masking():
    a, b = _logits(7), _logits(8)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    per_token = []
    for i, j in [(0, 0), (0, 1), (1, 0)]:
        one = torch.ones(1, 1)
        per_token.append(losses.forward_kl(a[i, j].view(1, 1, -1), b[i, j].view(1, 1, -1), one, 3.0).item())
    assert losses.forward_kl(a, b, mask, 3.0).item() == pytest.approx(sum(per_token) / 3, rel=1e-5)
    soft = losses.forward_kl(a, b, mask, 3.0).item() / 9
    direct = losses.forward_kl(a / 3.0, b / 3.0, mask, 1.0).item()
    assert soft == pytest.approx(direct, rel=1e-5)


def test_mix_and_bad_arguments():
    first, second = torch.tensor(2.0), torch.tensor(4.0)
    assert losses.mix(1.0, first, second).item() == 2.0
    assert losses.mix(0.0, first, second).item() == 4.0
    assert losses.mix(0.25, first, second).item() == pytest.approx(3.5)
    with pytest.raises(ValueError, match="alpha"):
        losses.mix(1.5, first, second)
    with pytest.raises(ValueError, match="temperature"):
        losses.forward_kl(first.view(1, 1, 1), first.view(1, 1, 1), torch.ones(1, 1), 0.0)
    with pytest.raises(ValueError, match="unknown divergence"):
        losses.kd_divergence("reverse", first.view(1, 1, 1), first.view(1, 1, 1), torch.ones(1, 1), 1.0)
