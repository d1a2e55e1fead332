"""LoRA layers: a frozen base layer plus a trainable low-rank update (Hu et al. 2021, §4.1).

For a frozen weight ``W0 ∈ R^{d×k}`` (d = out features, k = in features) LoRA learns
``A ∈ R^{r×k}`` and ``B ∈ R^{d×r}`` and computes ``h = W0 x + (α/r) · B A x``.

The layers *wrap* the base layer (``self.base``) rather than inheriting from it, so one class
serves ``nn.Linear`` (weight stored (out, in)) and transformers' ``Conv1D`` (weight stored
(in, out), as in GPT-2). ``merge()`` folds ``(α/r)·BA`` into the base weight for inference with
no extra latency; ``unmerge()`` takes it out again. Both are explicit and idempotent.

The forward of every layer here is that formula in plain PyTorch ops, so that what a reader
opens is what autograd differentiates and what ``torch.compile`` traces. A faster, fused
computation of the same formula (one stacked matmul, a hand-written backward, Triton kernels for
the dropout) lives apart, in :mod:`lorakit.lora.fast`; it is off by default and switched on per
layer (``layer.fast_path``) or per model (:func:`lorakit.lora.fast.set_fast_path`), as the
trainer does when it replays steps as CUDA graphs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .fast.function import fused_forward
from .kinds import linear_dims
from .settings import check_rank, check_settings


def lora_scaling(alpha: float, r: int, rslora: bool = False) -> float:
    """The factor in front of ``BA``: ``α/r`` (paper), or ``α/√r`` with rsLoRA (Kalajdzievski
    2023)."""
    return alpha / math.sqrt(r) if rslora else alpha / r


def init_lora_A(A: torch.Tensor, init: str) -> None:
    """Initialise A in place; B is always zero so that ΔW = BA = 0 at the start (paper §4.1).

    ``"gaussian"`` (default, the paper's choice): ``A ~ N(0, 1/k)``; the paper says "random
    Gaussian" without a scale, and variance ``1/k`` keeps ``A x`` at the scale of ``x``.
    ``"kaiming"``: Kaiming-uniform with ``a=√5``, i.e. ``U(-1/√k, 1/√k)``, what loralib and PEFT
    do because it is ``nn.Linear``'s own default. The two differ only in the scale and shape of
    A's initial distribution; with B = 0 neither changes the model at step 0.
    """
    check_settings(init=init)
    if init == "gaussian":
        nn.init.normal_(A, mean=0.0, std=1.0 / math.sqrt(A.shape[1]))
    else:
        nn.init.kaiming_uniform_(A, a=math.sqrt(5))


class _Mergeable(nn.Module):
    """Explicit, idempotent merge/unmerge shared by the LoRA layers (each defines
    ``_delta_in_base``).

    The new base weight is computed in fp32 and cast back; a result that is not finite (a
    merge that overflows fp16, say) is refused before the weight is written, so ``unmerge``
    can always restore the base.
    """

    merged: bool

    def _delta_in_base(self) -> torch.Tensor:
        """``ΔW`` in fp32, in the base weight's own layout."""
        raise NotImplementedError

    def _new_weight(self, sign: float) -> torch.Tensor:
        w = self.base.weight
        new = (w.to(torch.float32) + sign * self._delta_in_base()).to(w.dtype)
        if not torch.isfinite(new).all():
            what = "Merging" if sign > 0 else "Unmerging"
            raise ValueError(
                f"{what} this LoRA layer would give non-finite weights in {w.dtype} (W0 ± ΔW "
                f"overflows its range, ±{torch.finfo(w.dtype).max:.3g}); the layer was left as it "
                "was. Keep it unmerged, or merge in a wider dtype (e.g. model.float() or bf16) "
                "first."
            )
        return new

    def _apply_delta(self, sign: float) -> None:
        with torch.no_grad():
            self.base.weight.copy_(self._new_weight(sign))

    def check_merge(self) -> None:
        """Raise ``ValueError`` if :meth:`merge` would overflow (nothing is changed)."""
        if not self.merged:
            with torch.no_grad():
                self._new_weight(+1.0)

    def merge(self) -> None:
        """Fold ΔW into the base weight (no extra latency at inference). Idempotent.

        Raises ``ValueError``, leaving the layer unmerged, if the merged weight would not be finite.
        """
        if not self.merged:
            self._apply_delta(+1.0)
            self.merged = True

    def unmerge(self) -> None:
        """Take ΔW back out of the base weight. Idempotent."""
        if self.merged:
            self._apply_delta(-1.0)
            self.merged = False

    def _check_not_training_merged(self) -> None:
        if self.merged and self.training and torch.is_grad_enabled() and self.lora_A.requires_grad:
            raise RuntimeError(
                "This LoRA layer is merged, so A and B get no gradient. Call "
                "lorakit.unmerge_lora(model) before training (or model.eval() for inference)."
            )


class LoRALinear(_Mergeable):
    """A frozen ``nn.Linear``/``Conv1D`` plus the update ``(α/r)·B A``.

    Parameters
    ----------
    base : nn.Linear or transformers Conv1D
        The layer to adapt; its parameters are frozen (``requires_grad=False``).
    r : int
        Rank of the update, ``1 <= r <= min(d, k)``.
    alpha : float, optional
        Scaling numerator; the update is multiplied by ``alpha / r`` (default ``alpha = r``).
    dropout : float
        Dropout on the input of the LoRA branch only (paper's GPT-2 setting: 0.1).
    init : {"gaussian", "kaiming"}
        How A is initialised (see :func:`init_lora_A`); B starts at zero.
    rslora : bool
        Use ``alpha / sqrt(r)`` instead of ``alpha / r``.

    Shapes: input ``(..., k)``, output ``(..., d)``; ``lora_A`` is ``(r, k)``, ``lora_B``
    ``(d, r)``.

    Attributes
    ----------
    fan_in_fan_out : bool
        Whether the base weight is stored (in, out) (``Conv1D``) rather than (out, in).
    fast_path : bool
        ``False`` (default): :meth:`forward` is the formula in plain PyTorch ops. ``True``: the
        same formula through the fused nodes of :mod:`lorakit.lora.fast`, except while
        ``torch.compile`` traces the model (the compiler is given the formula either way).
    """

    fast_path: bool

    def __init__(
        self,
        base: nn.Module,
        r: int,
        alpha: float | None = None,
        dropout: float = 0.0,
        init: str = "gaussian",
        rslora: bool = False,
    ) -> None:
        super().__init__()
        k, d, self.fan_in_fan_out = linear_dims(base)
        check_rank(r, self._slice_out(d), k, type(base).__name__)
        check_settings(alpha=alpha, dropout=dropout, init=init, rslora=rslora)  # before freezing
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.in_features, self.out_features = k, d
        self.r, self.alpha = r, float(r if alpha is None else alpha)
        self.scaling = lora_scaling(self.alpha, r, rslora)
        self.rslora, self.init = rslora, init
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(self._a_shape(), device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(self._b_shape(), device=w.device, dtype=w.dtype))
        self.merged = False
        self.fast_path = False  # the plain formula; lorakit.lora.fast.set_fast_path switches
        self.reset_lora_parameters()

    # shapes (overridden by the fused layer)
    def _slice_out(self, d: int) -> int:
        return d

    def _a_shape(self) -> tuple[int, ...]:
        return (self.r, self.in_features)

    def _b_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.r)

    def reset_lora_parameters(self) -> None:
        """A random (see ``init``), B zero: the layer starts equal to its base."""
        with torch.no_grad():
            init_lora_A(self.lora_A, self.init)
            self.lora_B.zero_()

    def delta_weight(self) -> torch.Tensor:
        """``ΔW = (α/r)·B A`` in the paper's layout ``(d, k)`` = (out, in)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def _delta_in_base(self) -> torch.Tensor:
        delta = self.delta_weight().to(torch.float32)
        return delta.T if self.fan_in_fan_out else delta

    def lora_delta(self, x: torch.Tensor) -> torch.Tensor:
        """The LoRA branch ``(α/r)·B A dropout(x)``: ``(..., k) -> (..., d)``.

        Dropout acts on the branch's input only; the frozen base layer sees ``x`` unchanged.
        """
        return F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``h = W0 x + (α/r)·B A dropout(x)`` (paper §4.1, eq. 3): ``(..., k) -> (..., d)``.

        When merged, ``W0`` already holds ``ΔW`` and the base layer alone computes ``h``. With
        ``fast_path`` on, :func:`lorakit.lora.fast.fused_forward` computes the same ``h`` in
        fewer kernels (see :mod:`lorakit.lora.fast` for when that pays).
        """
        if self.merged:
            self._check_not_training_merged()
            return self.base(x)
        if self.fast_path:
            return fused_forward(self, x)
        return self.base(x) + self.lora_delta(x)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, r={self.r}, alpha={self.alpha:g}, "
            f"scaling={self.scaling:.4g}, merged={self.merged}"
            + (", fast_path=True" if self.fast_path else "")
        )


class FusedLoRALinear(LoRALinear):
    """LoRA on slices of a fused projection, e.g. GPT-2's ``attn.c_attn`` (q, k, v at once).

    The output ``(..., n·d_s)`` is ``n`` equal slices; only the slices with ``enable[i]`` get an
    update (the paper adapts q and v: ``enable=(True, False, True)``), so k's slice of the weight
    is never touched, unlike PEFT, which can only adapt the whole fused matrix.

    ``lora_A`` is ``(n_en·r, k)``: the A matrices of the enabled slices stacked, so one matmul
    serves all of them. ``lora_B`` is ``(n_en, d_s, r)``: one B per enabled slice.

    Parameters
    ----------
    base, r : as for :class:`LoRALinear`; ``r`` must fit one slice (``r <= min(d_s, k)``).
    enable : one flag per slice: which slices get an update.
    slice_names : one name per slice, in output order (``lora_factors`` keys, saved adapters).
    **settings : ``alpha``, ``dropout``, ``init``, ``rslora``, as for :class:`LoRALinear`.
    """

    def __init__(
        self,
        base: nn.Module,
        r: int,
        *,
        enable: Sequence[bool] = (True, False, True),
        slice_names: Sequence[str] = ("q", "k", "v"),
        **settings: Any,
    ) -> None:
        self.enable = tuple(bool(e) for e in enable)
        self.slice_names = tuple(slice_names)
        if len(self.slice_names) != len(self.enable) or not any(self.enable):
            raise ValueError(
                f"enable={enable} must have one flag per slice {slice_names} and at least one True."
            )
        d = linear_dims(base)[1]
        if d % len(self.enable):
            raise ValueError(
                f"output size {d} does not split into {len(self.enable)} equal slices."
            )
        self.d_slice = d // len(self.enable)
        self.enabled_idx = [i for i, e in enumerate(self.enable) if e]
        super().__init__(base, r, **settings)
        # placement[i, j] = 1 where enabled slice j sits at output slice i (see block_B)
        placement = torch.zeros(len(self.enable), len(self.enabled_idx), device=self.lora_B.device)
        placement[self.enabled_idx, range(len(self.enabled_idx))] = 1.0
        self.register_buffer("placement", placement, persistent=False)
        # what forward multiplies B by, built once (see _scaled_placement)
        self._placed_scaling = self.scaling
        self.register_buffer("scaled_placement", self._scaled_placement(), persistent=False)

    def _slice_out(self, d: int) -> int:
        return d // len(self.enable)

    def _a_shape(self) -> tuple[int, ...]:
        return (len(self.enabled_idx) * self.r, self.in_features)

    def _b_shape(self) -> tuple[int, ...]:
        return (len(self.enabled_idx), self.d_slice, self.r)

    def reset_lora_parameters(self) -> None:
        with torch.no_grad():
            for j in range(len(self.enabled_idx)):  # each slice's A initialised as its own (r, k)
                init_lora_A(self.lora_A[j * self.r : (j + 1) * self.r], self.init)
            self.lora_B.zero_()

    def factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{slice name: (A (r, k), B (d_s, r))}`` for each enabled slice (views, not copies)."""
        return {
            self.slice_names[i]: (self.lora_A[j * self.r : (j + 1) * self.r], self.lora_B[j])
            for j, i in enumerate(self.enabled_idx)
        }

    def delta_weight(self) -> torch.Tensor:
        """``ΔW = (α/r)·B_blk A`` (out, in): each slice's ``B_i A_i``, zeros for the others."""
        return self.scaling * (self.block_B() @ self.lora_A)

    def block_B(self) -> torch.Tensor:
        """All B's as one ``(n·d_s, n_en·r)`` matrix: ``B_i`` in slice ``i``'s rows and enabled
        slice ``j``'s ``r`` columns, zeros elsewhere (the rows of a slice without LoRA are zero).

        ``block_B() @ lora_A`` is the whole update of the fused layer, and
        ``h @ block_B().T`` with ``h = A dropout(x)`` puts each slice's branch in its own place.
        Gradients flow to ``lora_B`` only through its blocks, so the zeros never train.
        """
        # blocks[i, :, j, :] = placement[i, j] * B_j: one broadcast multiply, no copy after it
        place = self.placement[:, None, :, None].to(self.lora_B.dtype)  # (n, 1, n_en, 1)
        blocks = place * self.lora_B.transpose(0, 1)  # (n, d_s, n_en, r)
        return blocks.reshape(self.out_features, -1)

    def lora_delta(self, x: torch.Tensor) -> torch.Tensor:
        """The branch of every enabled slice ``i``, ``(α/r)·B_i A_i dropout(x)``, in that slice of
        the output, zeros in the others: ``(..., k) -> (..., n·d_s)``.

        One matmul with the stacked ``lora_A`` gives ``A_i dropout(x)`` for all enabled slices,
        one with :meth:`block_B` places each ``B_i A_i dropout(x)`` in its slice.
        """
        return F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.block_B()) * self.scaling

    def _scaled_placement(self) -> torch.Tensor:
        """``scaling · placement`` in fp32, laid out ``(n_en, r, n, 1)`` for :meth:`forward`.

        Times ``B`` seen as ``(n_en, r, 1, d_s)`` it gives ``(α/r)·B_blkᵀ`` as ``(n_en, r, n, d_s)``
        in row-major order, so viewing it as the ``(n_en·r, n·d_s)`` matrix copies nothing.
        """
        place = self.placement.to(torch.float32).T * self.scaling  # (n_en, n)
        return place[:, None, :, None].expand(-1, self.r, -1, -1).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``h = W0 x + (α/r)·B_blk A dropout(x)``: ``(..., k) -> (..., n·d_s)``.

        The formula of :class:`LoRALinear` with ``B_blk`` = :meth:`block_B`, written so that an
        eager step issues few operator calls (it is bound by them, not by the GPU): the rows are
        flattened once, ``(α/r)·B_blkᵀ`` is one multiply of ``B`` by :meth:`_scaled_placement`
        (the scaling rides in that tiny block rather than in ``addmm``'s ``alpha``, which would cost
        two more multiplies in backward), and the add rides in the second matmul
        (``torch.addmm``), so the branch costs two matmuls, as an unsliced LoRA layer's does.
        """
        if self.merged or self.fast_path:
            return super().forward(x)
        rows = x.reshape(-1, x.shape[-1])  # (N, k)
        out = self.base(rows)  # (N, n·d_s)
        h = F.linear(self.lora_dropout(rows), self.lora_A)  # (N, n_en·r)
        if h.dtype != out.dtype:  # e.g. a bf16 base with fp32 LoRA factors, no autocast
            out = out + F.linear(h, self.block_B()) * self.scaling
            return out.view(*x.shape[:-1], out.shape[-1])
        place = self.scaled_placement
        if place.dtype != torch.float32 or self._placed_scaling != self.scaling:
            place = self._scaled_placement()  # after model.to(bf16) or a new scaling
        B_t = self.lora_B.mT.unsqueeze(2)  # (n_en, r, 1, d_s)
        update = (place * B_t).reshape(-1, self.out_features)  # (n_en·r, n·d_s): (α/r)·B_blkᵀ
        if update.dtype != h.dtype:
            update = update.to(h.dtype)
        return torch.addmm(out, h, update).view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        on = ",".join(n for n, e in zip(self.slice_names, self.enable) if e)
        return super().extra_repr() + f", slices={on}"


class LoRAEmbedding(_Mergeable):
    """A frozen ``nn.Embedding`` ``W0 ∈ R^{V×d}`` plus a low-rank update of its table.

    The update is ``ΔW^T = (α/r)·B A`` with ``A ∈ R^{r×V}`` and ``B ∈ R^{d×r}`` (the paper's
    layout with k = V), so a token id ``t`` gets ``(α/r)·B A[:, t]`` added to its embedding.
    """

    def __init__(
        self,
        base: nn.Embedding,
        r: int,
        alpha: float | None = None,
        init: str = "gaussian",
        rslora: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(base, nn.Embedding):
            raise TypeError(f"LoRAEmbedding wraps nn.Embedding, not {type(base).__name__}.")
        V, d = base.weight.shape
        check_rank(r, d, V, "nn.Embedding")
        check_settings(alpha=alpha, init=init, rslora=rslora)
        self.base = base
        base.weight.requires_grad_(False)
        self.r, self.alpha = r, float(r if alpha is None else alpha)
        self.scaling, self.init = lora_scaling(self.alpha, r, rslora), init
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, V, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(d, r, device=w.device, dtype=w.dtype))
        with torch.no_grad():
            init_lora_A(self.lora_A, init)
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """``ΔW`` in the table's layout ``(V, d)``."""
        return self.scaling * (self.lora_B @ self.lora_A).T

    def _delta_in_base(self) -> torch.Tensor:  # in fp32, as LoRALinear, so round trips drift alike
        return self.delta_weight().to(torch.float32)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.base(ids)
        if self.merged:
            self._check_not_training_merged()
            return out
        b = self.base  # no max_norm here: it would renormalise the columns of A in place
        rows = F.embedding(
            ids, self.lora_A.T, b.padding_idx, None, b.norm_type, b.scale_grad_by_freq, b.sparse
        )
        return out + (rows @ self.lora_B.T) * self.scaling
