"""Training a network in a random subspace of its parameters: intrinsic dimension (chapter 2).

``theta = theta0 + P z`` with ``P`` a fixed random ``(D, d)`` matrix and only ``z`` trained (Li et
al. 2018). With ``theta0`` a trained network this measures the intrinsic dimension of adapting it
(Aghajanyan et al. 2020), the finding LoRA builds on.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SubspaceModel(nn.Module):
    """Train a network in a random d-dimensional subspace of its parameters (Li et al. 2018).

    ``theta = theta0 + P z``: ``theta0`` (D,) holds the wrapped model's initial parameters
    (frozen), ``P`` (D, d) is a fixed random projection with unit-norm columns, and only ``z``
    (d,), started at zero, trains. The smallest d that reaches (say) 90% of full training's
    accuracy is the task's intrinsic dimension; Aghajanyan et al. (2020) found it small for
    fine-tuning pretrained language models, which is the motivation of LoRA's low-rank update.

    Parameters
    ----------
    model : nn.Module
        The network; its parameters are frozen and used as ``theta0``. Calls go through
        ``torch.func.functional_call``, so ``forward`` takes the model's own arguments.
    d : int
        Subspace dimension, ``1 <= d``.
    seed : int
        Seed of the projection ``P``.
    """

    def __init__(self, model: nn.Module, d: int, seed: int = 0):
        super().__init__()
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"d must be a positive integer (the subspace dimension); got {d!r}.")
        self.model = model
        self._names = [name for name, _ in model.named_parameters()]
        self._shapes = [p.shape for _, p in model.named_parameters()]
        theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        for p in model.parameters():
            p.requires_grad_(False)
        gen = torch.Generator().manual_seed(seed)
        P = torch.randn(theta0.numel(), d, generator=gen, dtype=theta0.dtype)
        self.register_buffer("theta0", theta0)
        self.register_buffer("P", (P / P.norm(dim=0, keepdim=True)).to(theta0.device))
        self.z = nn.Parameter(torch.zeros(d, dtype=theta0.dtype, device=theta0.device))

    def params(self) -> dict[str, torch.Tensor]:
        """The wrapped model's parameters ``theta0 + P z``, by name."""
        theta = self.theta0 + self.P @ self.z
        sizes = [math.prod(s) for s in self._shapes]
        pieces = torch.split(theta, sizes)
        return {n: t.view(s) for n, t, s in zip(self._names, pieces, self._shapes)}

    def forward(self, *args, **kwargs):
        return torch.func.functional_call(self.model, self.params(), args, kwargs)
