"""Layers that apply a different LoRA adapter to each row of a batch, with gathered matmuls.

The paper (§4.2) notes that one deployed base can serve many tasks by swapping A and B, and that
batching inputs of different tasks in one forward pass "is not straightforward" when the update
is merged into the weights. Kept unmerged, it is: each row ``b`` adds its own adapter's branch,

    h_b = W0 x_b + B_{a(b)} A_{a(b)} x_b,

and the branch of every row at once is two batched matmuls over factors gathered by index::

    A_rows = A[slots]        (n, R, k)    one index_select over the stacked adapters
    B_rows = B[slots]        (n, d, R)
    out    = W0 x + (x A_rowsᵀ) B_rowsᵀ   torch.bmm, then torch.baddbmm onto the base output

There is no Python loop over rows or adapters, the shapes do not depend on which adapters the
rows name (so the forward can be captured in a CUDA graph), and the cost grows with the rank,
not with the number of adapters loaded. Adapters of different ranks are zero-padded to the
largest (exact: the padded rows of A and columns of B are zero). Slot 0 is all zeros: a row that
names no adapter gets the base model's output. The scaling ``s`` is folded into the stored B.

These layers serve inference only: their stacks are buffers, nothing here trains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .factors import Factors, base_shape, module_kind


class RowRouter:
    """Which adapter slot each row of the running batch uses; shared by all multi-adapter layers.

    ``route`` is ``None`` (every row on the base: the branch is skipped), an ``int`` (every row
    on that slot: plain matmuls, no gather), or a ``LongTensor`` (B0,) of slots, one per input
    row (on the CPU, copied once per call; or already on the model's device, used as it is, which
    a CUDA graph capture needs). ``batch`` is the number of rows of the forward that runs (set by
    the model's forward pre-hook): a generate call with beam search runs ``B0 · beams`` rows, the
    beams of each input row next to each other, so each slot is repeated ``batch / B0`` times.

    ``overlap_streams`` (default ``False``; CUDA only, and only while a CUDA graph is captured):
    compute each layer's ``x Aᵀ`` on a second stream, beside the base layer's matmul, so that the
    graph runs the two side by side (a small batch leaves most of the GPU idle in that matmul).
    """

    def __init__(self) -> None:
        self.route: None | int | torch.Tensor = None
        self.active = False
        self.batch: int | None = None
        self.overlap_streams = False
        self._cache: dict[tuple[str, int], torch.Tensor] = {}
        self._side: dict[int | None, torch.cuda.Stream] = {}

    def set(self, route: None | int | torch.Tensor) -> None:
        self.route, self.active, self._cache = route, True, {}

    def clear(self) -> None:
        self.route, self.active, self._cache = None, False, {}

    def prepare(self, device: torch.device) -> None:
        """Copy the route to ``device`` now, before the forward queues work (a CUDA copy from
        pinned memory does not wait for the GPU)."""
        if self.overlap_streams and device.type == "cuda" and device.index not in self._side:
            self._side[device.index] = torch.cuda.Stream(device)  # made before any capture
        key = (str(device), 0)
        if isinstance(self.route, torch.Tensor) and key not in self._cache:
            route = self.route
            if route.device != device and device.type == "cuda":
                route = route.pin_memory()
            self._cache[key] = route.to(device, non_blocking=True)

    def slots(self, n: int, device: torch.device) -> torch.Tensor:
        """The slot of each of ``n`` rows, (n,) on ``device`` (cached: computed once per call)."""
        key = (str(device), n)
        if key not in self._cache:
            self.prepare(device)
            route = self._cache[(str(device), 0)]
            b0 = route.shape[0]
            if n % b0:
                raise ValueError(
                    f"The batch has {n} rows but the adapters were named for {b0}; "
                    "name one adapter per input row."
                )
            self._cache[key] = route if n == b0 else route[:, None].expand(b0, n // b0).reshape(n)
        return self._cache[key]

    def side_stream(self, device: torch.device) -> torch.cuda.Stream | None:
        """The stream for ``x Aᵀ`` when ``overlap_streams`` is on and a CUDA graph is being
        captured on ``device``; ``None`` otherwise (the branch then runs in order, on one
        stream)."""
        if not (
            self.overlap_streams
            and device.type == "cuda"
            and torch.cuda.is_current_stream_capturing()
        ):
            return None
        if device.index not in self._side:
            self._side[device.index] = torch.cuda.Stream(device)
        return self._side[device.index]


class _SlotLayer(nn.Module):
    """What both multi-adapter layers share: a frozen ``base``, the ``router``, and the buffers
    ``lora_A`` (S, ...) and ``lora_B`` (S, d, R) that stack one adapter per slot.

    ``update_shape`` is ``(d, k)``, the shape of the update ``B A`` an adapter must have; the
    stacks start with slot 0 (zeros, the base), ``lora_A`` shaped ``(1, *a_shape)``.
    """

    def __init__(
        self,
        base: nn.Module,
        router: RowRouter,
        update_shape: tuple[int, int],
        a_shape: tuple[int, int],
    ) -> None:
        super().__init__()
        self.base, self.router = base, router
        self.update_shape = update_shape
        w = base.weight
        self.register_buffer("lora_A", w.new_zeros(1, *a_shape))
        self.register_buffer("lora_B", w.new_zeros(1, update_shape[0], 1))

    @property
    def n_slots(self) -> int:
        return self.lora_A.shape[0]

    def add_slot(self, factors: Factors | None) -> None:
        """Append a slot holding ``factors`` (or zeros), padding ranks to the largest."""
        add_slot(self, factors, self.update_shape)


class MultiLoRALinear(_SlotLayer):
    """A frozen ``nn.Linear``/``Conv1D`` plus one LoRA branch per row, picked by :class:`RowRouter`.

    Buffers ``lora_A`` (S, R, k) and ``lora_B`` (S, d, R) stack the S slots (slot 0: zeros, the
    base); ``lora_B`` holds ``s·B``. Input ``(n, ..., k)``, output ``(n, ..., d)``.
    """

    def __init__(self, base: nn.Module, router: RowRouter) -> None:
        kind = module_kind(base)
        if kind == "embedding":
            raise TypeError("MultiLoRALinear wraps nn.Linear or Conv1D; use MultiLoRAEmbedding.")
        d, k = base_shape(base)
        super().__init__(base, router, (d, k), (1, k))
        self.kind = kind
        self.out_features, self.in_features = d, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``W0 x_b + s·B_{a(b)} A_{a(b)} x_b`` for every row ``b``:
        ``(n, ..., k) -> (n, ..., d)``."""
        route = self.router.route
        if route is None:
            return self.base(x)
        side = self.router.side_stream(x.device)
        if side is None:
            return self._add_up(self.base(x), self._down(x, route), route)
        main = torch.cuda.current_stream(x.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):  # x Aᵀ beside the base's matmul (inside a graph capture)
            h = self._down(x, route)
        out = self.base(x)
        main.wait_stream(side)
        return self._add_up(out, h, route)

    def _down(self, x: torch.Tensor, route: int | torch.Tensor) -> torch.Tensor:
        """``h = x Aᵀ``: (n·T, R) for one adapter, (n, T, R) with each row's own A (gathered)."""
        k = self.in_features
        if isinstance(route, int):  # one adapter for all rows: a plain matmul
            return x.reshape(-1, k) @ self.lora_A[route].T
        n = x.shape[0]
        A = self.lora_A.index_select(0, self.router.slots(n, x.device))  # (n, R, k)
        return torch.bmm(x.reshape(n, -1, k), A.transpose(1, 2))

    def _add_up(
        self, out: torch.Tensor, h: torch.Tensor, route: int | torch.Tensor
    ) -> torch.Tensor:
        """``out + h (s·B)ᵀ`` in place, each row with its own B (gathered) for a mixed route."""
        d = self.out_features
        if isinstance(route, int):
            return out.reshape(-1, d).addmm_(h, self.lora_B[route].T).view(out.shape)
        n = out.shape[0]
        B = self.lora_B.index_select(0, self.router.slots(n, out.device))  # (n, d, R)
        return out.reshape(n, -1, d).baddbmm_(h, B.transpose(1, 2)).view(out.shape)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, slots={self.n_slots}, "
            f"rank={self.lora_A.shape[1]}"
        )


class MultiLoRAEmbedding(_SlotLayer):
    """A frozen ``nn.Embedding`` plus one low-rank update of its table per row.

    Buffers ``lora_A`` (S, V, R) (the transposed ``A`` of each slot, so that a lookup gathers a
    token's R values) and ``lora_B`` (S, d, R) holding ``s·B``. Token ``t`` of row ``b`` gets
    ``s·B_{a(b)} A_{a(b)}[:, t]`` added to its embedding. The ids may have one row for the
    whole batch (GPT-2 looks up positions as (1, T)); the output then has the batch's rows.
    """

    def __init__(self, base: nn.Embedding, router: RowRouter) -> None:
        if module_kind(base) != "embedding":
            raise TypeError("MultiLoRAEmbedding wraps nn.Embedding; use MultiLoRALinear.")
        V, d = base.weight.shape
        super().__init__(base, router, (d, V), (V, 1))
        self.num_embeddings, self.embedding_dim = V, d

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings plus each row's update: ids ``(n or 1, T)`` -> ``(n, T, d)``."""
        out = self.base(ids)
        route = self.router.route
        if route is None:
            return out
        if isinstance(route, int):
            h = F.embedding(ids, self.lora_A[route])  # (.., T, R)
            return out + h @ self.lora_B[route].T
        n = self.router.batch or ids.shape[0]
        if ids.shape[0] != n:
            if ids.shape[0] != 1:
                raise ValueError(f"{ids.shape[0]} rows of ids in a batch of {n} rows.")
            ids, out = ids.expand(n, *ids.shape[1:]), out.expand(n, *out.shape[1:])
        slots = self.router.slots(n, ids.device)
        V, R = self.num_embeddings, self.lora_A.shape[2]
        flat = (slots.view(n, *[1] * (ids.dim() - 1)) * V + ids).reshape(n, -1)
        h = F.embedding(flat, self.lora_A.reshape(-1, R))  # (n, T, R)
        B = self.lora_B.index_select(0, slots)  # (n, d, R)
        d = self.embedding_dim
        return torch.baddbmm(out.reshape(n, -1, d), h, B.transpose(1, 2)).view(out.shape)

    def extra_repr(self) -> str:
        return (
            f"V={self.num_embeddings}, d={self.embedding_dim}, slots={self.n_slots}, "
            f"rank={self.lora_A.shape[2]}"
        )


def add_slot(layer: _SlotLayer, factors: Factors | None, shape: tuple[int, int]) -> None:
    """Append one slot to ``layer``'s stacks (cast to the base weight's dtype and device)."""
    w = layer.base.weight
    embedding = isinstance(layer, MultiLoRAEmbedding)
    if factors is None:
        A, B = w.new_zeros(1, shape[1]), w.new_zeros(shape[0], 1)
    else:
        if factors.shape != shape:
            raise ValueError(
                f"the adapter's update is {factors.shape} (d, k), the layer's "
                f"{shape}: it was made for another base."
            )
        A = factors.A.to(device=w.device, dtype=torch.float32)
        B = factors.B.to(device=w.device, dtype=torch.float32) * factors.scaling
        A, B = A.to(w.dtype), B.to(w.dtype)
    if embedding:
        A = A.T  # (V, R): a lookup gathers a token's R values
    r_axis = 1 if embedding else 0
    stack_A, stack_B = layer.lora_A, layer.lora_B
    R = max(stack_B.shape[2], B.shape[1])
    stack_A = _pad(stack_A, 2 if embedding else 1, R)
    stack_B = _pad(stack_B, 2, R)
    A = _pad(A, r_axis, R)
    B = _pad(B, 1, R)
    layer.lora_A = torch.cat([stack_A, A[None]], dim=0)
    layer.lora_B = torch.cat([stack_B, B[None]], dim=0)


def _pad(t: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``t`` zero-padded along ``dim`` to ``size``."""
    if t.shape[dim] >= size:
        return t
    shape = list(t.shape)
    shape[dim] = size - t.shape[dim]
    return torch.cat([t, t.new_zeros(shape)], dim=dim)


def remove_slot(layer: _SlotLayer, slot: int) -> None:
    """Drop slot ``slot`` (> 0) from ``layer``'s stacks; later slots move down by one."""
    keep = [i for i in range(layer.n_slots) if i != slot]
    idx = torch.tensor(keep, device=layer.lora_A.device)
    layer.lora_A = layer.lora_A.index_select(0, idx)
    layer.lora_B = layer.lora_B.index_select(0, idx)
