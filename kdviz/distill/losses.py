"""Distillation losses as pure functions of logits, targets and masks (no model, no state).

Shapes: logits [B, T, V] at the target positions (position t predicts target token t), `target_ids` [B, T],
`mask` [B, T] with 1 where a target token is real and 0 at padding. Every loss is a mean over real tokens, so
batches with different amounts of padding weigh each token the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KD_LOSSES = ("kl", "jsd")


def _token_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def masked_cross_entropy(logits: torch.Tensor, target_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Returns the mean negative log-likelihood of the target tokens (padding excluded)."""
    per_token = F.cross_entropy(logits.float().transpose(1, 2), target_ids, reduction="none")
    return _token_mean(per_token, mask)


def forward_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Returns KL(teacher ‖ student) per token, averaged, on distributions softened by `temperature`.

    Scaled by temperature² (Hinton et al., 2015) so its gradients keep their size as the temperature changes.
    Forward KL is mode-covering: the student is pushed to put mass wherever the teacher does.
    """
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_token = (log_p.exp() * (log_p - log_q)).sum(-1)
    return _token_mean(per_token, mask) * temperature**2


def jensen_shannon(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Returns the Jensen-Shannon divergence per token (natural log, so at most ln 2), averaged, × temperature².

    Symmetric and bounded, unlike KL: a student far from the teacher gets a finite, stable signal.
    """
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    per_token = 0.5 * (log_p.exp() * (log_p - log_m)).sum(-1) + 0.5 * (log_q.exp() * (log_q - log_m)).sum(-1)
    return _token_mean(per_token, mask) * temperature**2


def kd_divergence(
    kind: str, student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Returns the divergence named `kind` ("kl" or "jsd")."""
    if kind == "kl":
        return forward_kl(student_logits, teacher_logits, mask, temperature)
    if kind == "jsd":
        return jensen_shannon(student_logits, teacher_logits, mask, temperature)
    raise ValueError(f"unknown divergence {kind!r}; choose from {', '.join(KD_LOSSES)}")


def mix(alpha: float, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Returns α·first + (1−α)·second, the weighting of Distilling step-by-step and of logit KD."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be between 0 and 1")
    return alpha * first + (1.0 - alpha) * second
