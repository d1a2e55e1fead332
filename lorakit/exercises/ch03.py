"""Chapter 3 exercises: LoRA from scratch (paper §4.1).

The references below are the notebook's solutions, the same code (the notebook's cells carry
``# sync: lorakit.exercises.ch03.<name>``). Later cells of the chapter use them, so a student
version runs to the end whatever state the learner's exercises are in. The package's own layer
is :class:`lorakit.LoRALinear`; these are the teaching versions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lorakit.exercises.compare import as_number, build_module
from lorakit.exercises.core import (
    ExerciseFailure,
    assert_close,
    assert_grad,
    assert_shape,
    fail,
    register,
)

# ----------------------------------------------------------------------------- references


def lora_forward(
    x: torch.Tensor, W0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float
) -> torch.Tensor:
    """LoRA's forward pass ``h = W0 x + (α/r) B A x`` for a batch of row vectors.

    Parameters
    ----------
    x : (..., k) inputs;  W0 : (d, k) frozen weight;  A : (r, k);  B : (d, r);  alpha : float.

    Returns
    -------
    torch.Tensor
        ``(..., d)``.
    """
    r = A.shape[0]
    return x @ W0.T + (alpha / r) * (x @ A.T @ B.T)


class LoRAFromScratch(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(α/r)·B A`` (paper §4.1).

    ``lora_A`` is ``(r, k)``, Gaussian; ``lora_B`` is ``(d, r)``, zero, so ΔW = BA = 0 at the
    start and the layer begins exactly equal to its base. Input ``(..., k)``, output ``(..., d)``.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        d, k = base.weight.shape
        self.lora_A = nn.Parameter(torch.randn(r, k) / math.sqrt(k))
        self.lora_B = nn.Parameter(torch.zeros(d, r))
        self.scaling = alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scaling * (x @ self.lora_A.T @ self.lora_B.T)


def merge_lora(W0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float) -> torch.Tensor:
    """The merged weight ``W = W0 + (α/r) B A``, ``(d, k)``; returns a new tensor, inputs untouched."""  # noqa: E501
    r = A.shape[0]
    return W0 + (alpha / r) * (B @ A)


def unmerge_lora(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float) -> torch.Tensor:
    """Undo :func:`merge_lora`: ``W0 = W - (α/r) B A``, ``(d, k)``; returns a new tensor."""
    r = A.shape[0]
    return W - (alpha / r) * (B @ A)


# ----------------------------------------------------------------------------- typical mistakes


def _forward_no_scaling(x, W0, A, B, alpha):
    return x @ W0.T + x @ A.T @ B.T


def _forward_r_over_alpha(x, W0, A, B, alpha):
    return x @ W0.T + (A.shape[0] / alpha) * (x @ A.T @ B.T)


def _forward_delta_only(x, W0, A, B, alpha):
    return (alpha / A.shape[0]) * (x @ A.T @ B.T)


def _forward_detached(x, W0, A, B, alpha):
    return lora_forward(x, W0, A.detach(), B.detach(), alpha)


class _LayerNoScaling(LoRAFromScratch):
    def forward(self, x):
        return self.base(x) + x @ self.lora_A.T @ self.lora_B.T


class _LayerRandomB(LoRAFromScratch):
    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        self.lora_B = nn.Parameter(torch.randn_like(self.lora_B) * 0.02)


class _LayerNotFrozen(LoRAFromScratch):
    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        self.base.requires_grad_(True)


class _LayerZeroA(LoRAFromScratch):
    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        self.lora_A = nn.Parameter(torch.zeros_like(self.lora_A))


class _LayerROverAlpha(LoRAFromScratch):
    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        self.scaling = r / alpha


class _LayerStub(nn.Module):  # what the student version holds
    def __init__(self, base, r, alpha):
        super().__init__()
        raise NotImplementedError("Exercise ch03.lora_layer")


def _merge_no_scaling(W0, A, B, alpha):
    return W0 + B @ A


def _merge_in_place(W0, A, B, alpha):
    W0 += (alpha / A.shape[0]) * (B @ A)
    return W0


def _merge_transposed(W0, A, B, alpha):
    return W0 + (alpha / A.shape[0]) * (A.T @ B.T)


def _unmerge_adds(W, A, B, alpha):
    return W + (alpha / A.shape[0]) * (B @ A)


def _unmerge_no_scaling(W, A, B, alpha):
    return W - B @ A


def _unmerge_in_place(W, A, B, alpha):
    return W.sub_((alpha / A.shape[0]) * (B @ A))


# ----------------------------------------------------------------------------- checkers

D, K, R, ALPHA = 6, 10, 3, 12.0  # d != k and alpha/r = 4, so transposes and scalings show


def _factors(seed: int = 0, d: int = D, k: int = K, r: int = R):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(d, k, generator=g),
        torch.randn(r, k, generator=g),
        torch.randn(d, r, generator=g),
        torch.randn(2, 5, k, generator=g),
    )


@register(
    "ch03.lora_forward",
    reference=lora_forward,
    wrong=[_forward_no_scaling, _forward_r_over_alpha, _forward_delta_only, _forward_detached],
)
def _check_lora_forward(candidate) -> None:
    W0, A, B, x = _factors()
    originals = [t.clone() for t in (x, W0, A, B)]
    assert_close(
        "h for x of shape (2, 5, 10)",
        candidate(x, W0, A, B, ALPHA),
        lora_forward(x, W0, A, B, ALPHA),
    )
    for name, t, t0 in zip(("x", "W0", "A", "B"), (x, W0, A, B), originals):
        if not torch.equal(t, t0):
            fail(f"lora_forward changed its input {name} in place; compute a new tensor instead")
    A1, B1, W01 = A[:1], B[:, :1], W0  # r = 1 and alpha = 1: scaling 1
    assert_close(
        "h with r=1, alpha=1",
        candidate(x[0], W01, A1, B1, 1.0),
        lora_forward(x[0], W01, A1, B1, 1.0),
    )
    grads = []
    for fn in (candidate, lora_forward):
        a, b = A.clone().requires_grad_(True), B.clone().requires_grad_(True)
        out = fn(x, W0, a, b, ALPHA)
        if not out.requires_grad:
            fail(
                "h does not depend differentiably on A and B (no gradient can flow); "
                "use torch operations on A and B, without .detach() or NumPy"
            )
        (out**2).sum().backward()
        grads.append((a.grad, b.grad))
    for name, got, ref in zip(("A", "B"), grads[0], grads[1]):
        if got is None:
            fail(f"no gradient reached {name}; use torch operations on it, without .detach()")
        assert_close(f"gradient of the loss with respect to {name}", got, ref, rtol=1e-4, atol=1e-4)


@register(
    "ch03.lora_layer",
    reference=LoRAFromScratch,
    stub=lambda: _LayerStub,
    wrong=[_LayerNoScaling, _LayerRandomB, _LayerNotFrozen, _LayerZeroA, _LayerROverAlpha],
)
def _check_lora_layer(candidate) -> None:
    torch.manual_seed(0)
    base = nn.Linear(K, D)
    w0, b0 = base.weight.detach().clone(), base.bias.detach().clone()
    layer = build_module(candidate, (base, R, ALPHA), ("lora_A", "lora_B"))
    A, B = layer.lora_A, layer.lora_B
    assert_shape("lora_A", A, (R, K))
    assert_shape("lora_B", B, (D, R))
    if bool((B != 0).any()):
        fail(
            "lora_B should start at zero, so that ΔW = BA = 0 and the layer starts equal to W0 "
            f"(paper §4.1); its largest entry is {B.abs().max().item():.3g}"
        )
    if float(A.detach().std()) == 0.0:
        fail(
            "lora_A should start random (Gaussian): it is constant"
            + (" zero; with B = 0 too, neither A nor B ever gets a gradient" if not A.any() else "")
        )
    if not (torch.equal(base.weight, w0) and torch.equal(base.bias, b0)):
        fail("creating the layer changed the base layer's weights; W0 must stay as it was")
    for name, p in base.named_parameters():
        if p.requires_grad:
            fail(
                f"the base layer's {name} still has requires_grad=True: W0 (and its bias) must be "
                "frozen, e.g. p.requires_grad_(False) for every parameter of the base"
            )
    scaling = getattr(layer, "scaling", None)
    if scaling is None:
        fail(
            f"the layer has no attribute scaling; set self.scaling = alpha / r ({ALPHA / R:g} here)"
        )
    scaling = as_number("layer.scaling", scaling)
    if not math.isclose(scaling, ALPHA / R):
        fail(
            f"layer.scaling: expected alpha / r = {ALPHA:g} / {R} = {ALPHA / R:g}, got {scaling!r}"
        )
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, K, generator=g)
    assert_close("output at initialisation (should equal base(x))", layer(x), base(x).detach())
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    if trainable != {"lora_A", "lora_B"}:
        fail(
            f"the trainable parameters should be exactly lora_A and lora_B, got {sorted(trainable)}"
        )
    with torch.no_grad():
        A.copy_(torch.randn(R, K, generator=g))
        B.copy_(torch.randn(D, R, generator=g))
    a_ref, b_ref = A.detach().clone().requires_grad_(True), B.detach().clone().requires_grad_(True)
    out = layer(x)
    ref = lora_forward(x, w0, a_ref, b_ref, ALPHA) + b0
    assert_close("output with non-zero A and B", out, ref)
    (out**2).mean().backward()
    (ref**2).mean().backward()
    for name, p in base.named_parameters():
        assert_grad(f"base.{name}", p, "none")
    assert_grad("lora_A", A, "nonzero")
    assert_grad("lora_B", B, "nonzero")
    assert_close("gradient of lora_A", A.grad, a_ref.grad, atol=1e-4)
    assert_close("gradient of lora_B", B.grad, b_ref.grad, atol=1e-4)


def _check_merge_like(candidate, reference, what: str) -> None:
    W0, A, B, x = _factors(seed=2)
    originals = [t.clone() for t in (W0, A, B)]
    got = candidate(W0, A, B, ALPHA)
    for name, t, t0 in zip(("the weight", "A", "B"), (W0, A, B), originals):
        if not torch.equal(t, t0):
            fail(
                f"{what} changed {name} in place; return a new tensor (e.g. W0 + ...) and leave "
                "its inputs as they were"
            )
    assert_close(f"{what}(W, A, B, alpha)", got, reference(W0, A, B, ALPHA))
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailure(f"{what} should return a tensor")


@register(
    "ch03.merge_lora",
    reference=merge_lora,
    wrong=[_merge_no_scaling, _merge_in_place, _merge_transposed],
)
def _check_merge(candidate) -> None:
    _check_merge_like(candidate, merge_lora, "merge_lora")
    W0, A, B, x = _factors(seed=3)
    assert_close(
        "x @ merged.T (should equal the unmerged LoRA output)",
        x @ candidate(W0, A, B, ALPHA).T,
        lora_forward(x, W0, A, B, ALPHA),
        atol=1e-4,
    )


@register(
    "ch03.unmerge_lora",
    reference=unmerge_lora,
    wrong=[_unmerge_adds, _unmerge_no_scaling, _unmerge_in_place],
)
def _check_unmerge(candidate) -> None:
    _check_merge_like(candidate, unmerge_lora, "unmerge_lora")
    W0, A, B, _ = _factors(seed=4)
    assert_close(
        "unmerge_lora(merge_lora(W0, ...)) (should give W0 back)",
        candidate(merge_lora(W0, A, B, ALPHA), A, B, ALPHA),
        W0,
        atol=1e-5,
    )
