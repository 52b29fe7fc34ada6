"""ganrev.adam: the written-out Adam against its oracle, torch.optim.Adam."""

import torch

from ganrev.adam import Adam


def test_steps_as_torch_adam_does() -> None:
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(5, 7, generator=generator)
    ours, oracle = start.clone(), start.clone().requires_grad_(True)
    adam, reference = Adam(ours), torch.optim.Adam([oracle], lr=0.05)
    for step in range(30):
        grad = torch.randn(5, 7, generator=generator) * (step + 1)
        adam.step(grad, 0.05)
        oracle.grad = grad.clone()
        reference.step()
    torch.testing.assert_close(ours, oracle.detach(), rtol=1e-6, atol=1e-6)
    assert not torch.equal(ours, start)
