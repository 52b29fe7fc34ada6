"""Adam on one tensor, for the loops that step a few tensors of their own (quantizer-in-the-loop refinement, the
modulation fit) rather than a module's parameters."""

from __future__ import annotations

import math

import torch


class Adam:
    """Adam on one tensor, updated in place, step for step as ``torch.optim.Adam`` computes it (betas 0.9,
    0.999). Written out because constructing a torch optimiser imports torch._dynamo, ~3 s of every compress
    command's start-up on CPU."""

    def __init__(self, param: torch.Tensor) -> None:
        self.param, self.steps = param, 0
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(param), torch.zeros_like(param)

    def step(self, grad: torch.Tensor, lr: float) -> None:
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        self.steps += 1
        with torch.no_grad():
            self.exp_avg.lerp_(grad, 1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2**self.steps)).add_(eps)
            self.param.addcdiv_(self.exp_avg, denom, value=-lr / (1 - beta1**self.steps))
