"""The training loss: next-token cross-entropy on the labelled positions only, without host syncs.

Why the loss is computed the way it is: for GPT-2 the vocabulary has 50,257 entries, so the full
logits tensor of a batch (B·T·V floats, in fp32 for a stable softmax) costs more memory and time
than everything LoRA adds. :func:`causal_lm_loss` therefore runs the backbone, keeps the hidden
states of the positions that carry a label, and applies the LM head to those rows only, chunk by
chunk, never holding all the logits (:func:`linear_cross_entropy`).

Why the labelled positions come from the CPU (:func:`label_positions`): picking rows with a
boolean mask (``hidden[mask]``) or reading their count (``int(mask.sum())``) on a GPU makes the
host wait for the device, every step, which turns a GPU-bound step into a slower, noisy one. The
labels are on the CPU before the batch is moved, so the loop
finds the positions there (the count is then a plain Python int) and the GPU only runs an
``index_select`` with a ready index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
CHUNK_ELEMENTS = 2**26  # logits per chunk in linear_cross_entropy (256 MiB in fp32)
VOCAB_MULTIPLE = 64  # the head is padded to this many rows for aligned (fast) GPU matmuls


class LabelPositions(NamedTuple):
    """Where a batch has a next-token label, found once (on the CPU) by :func:`label_positions`.

    Attributes
    ----------
    rows : (n,) long, flat indices ``b * T + t`` into the (B·T) positions whose next token
        ``labels[b, t + 1]`` is a label.
    target : (n,) long, those next tokens.
    n : the number of label tokens: a Python int (reading it never waits for a device), or a
        0-d float tensor on the device when the positions are padded to a fixed size.
    padded : whether ``rows`` and ``target`` are padded to a fixed length (the CUDA-graph steps
        of :func:`lorakit.train.train`): padding entries have ``target == -100`` and count for
        nothing; ``n`` counts the real ones.
    """

    rows: torch.Tensor
    target: torch.Tensor
    n: int | torch.Tensor
    padded: bool = False

    def to(self, device: torch.device) -> LabelPositions:
        """The same positions on ``device`` (asynchronous copies)."""
        n = self.n.to(device, non_blocking=True) if torch.is_tensor(self.n) else self.n
        return LabelPositions(
            self.rows.to(device, non_blocking=True),
            self.target.to(device, non_blocking=True),
            n,
            self.padded,
        )


def label_positions(labels: torch.Tensor) -> LabelPositions:
    """The positions of ``labels`` (B, T) that predict a label, for :func:`causal_lm_loss`.

    Call it on the CPU copy of the labels (before the batch moves to the GPU): there it costs no
    device sync. Output at position ``t`` predicts ``labels[:, t + 1]``, so the last position of
    each row never has a target.

    Raises
    ------
    ValueError : when every label is -100 (there is no loss to compute).
    """
    if labels.ndim != 2:
        raise ValueError(
            f"labels must be (batch, seq), got shape {tuple(labels.shape)}; "
            "build batches with lorakit.data.make_batches."
        )
    keep = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    rows = keep.flatten().nonzero().squeeze(1)  # (n,)
    n = rows.numel()
    if n == 0:
        raise ValueError(
            "The batch has no label != -100, so there is no loss to compute; "
            "check the collation (labels -100 only on the prompt and padding)."
        )
    target = labels.flatten().index_select(0, rows + 1)  # the next token of each kept position
    return LabelPositions(rows, target, n)


def _log_softmax_fp32(z: torch.Tensor) -> torch.Tensor:
    """``log_softmax(z, -1)`` in fp32 (fp16 on CUDA is upcast inside the kernel, bf16 first)."""
    if z.dtype == torch.float16 and z.is_cuda:
        return torch._log_softmax(z, -1, True)  # half_to_float (PyTorch has it for fp16 only)
    return torch.log_softmax(z, dim=-1, dtype=torch.float32)


def _chunk_rows(n: int, most: int) -> int:
    """Rows per chunk: at most ``most``, chunks of (nearly) equal size, a multiple of 128 if big."""
    chunks = -(-n // most)
    rows = -(-n // chunks)
    return min(most, -(-rows // 128) * 128) if rows > 128 else rows


def padded_vocab(vocab: int) -> int:
    """``vocab`` rounded up to a multiple of :data:`VOCAB_MULTIPLE` (GPT-2: 50,257 -> 50,304)."""
    return -(-vocab // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """``cross_entropy(hidden @ weight.T, target)`` (mean) without keeping the (n, V) logits.

    The rows are processed in chunks; each chunk's logits live only long enough to give its loss
    and its gradient, which is computed right away and pushed through the head:
    ``grad_hidden = g @ W``, ``grad_W += g.T @ hidden``. Backward only scales these by the incoming
    gradient. Memory: one (chunk, V) block instead of several (n, V) fp32 tensors; the matmuls run
    in the autocast dtype, the softmax in fp32, as autograd would.

    Two things keep it fast on a GPU, where the head over 50,257 words is the biggest matmul of a
    GPT-2 step and the (chunk, V) blocks are the biggest tensors:

    * **An aligned vocabulary.** 50,257 is odd, so a (chunk, 50257) matrix has rows that start at
      unaligned addresses and cuBLAS falls back to much slower kernels. The head is padded to
      :func:`padded_vocab` rows of zeros whose logits get a ``-inf`` bias: they have
      probability 0 and change neither the loss nor the gradients.
    * **Few passes over the block.** One ``log_softmax`` in fp32, one ``exp`` straight into the
      logits' buffer for the softmax, and a scatter for the one-hot part. The scaling by ``1/n``
      and the uniform part of label smoothing (``-s/V`` in every column) are applied to the small
      (chunk, d) results instead: ``-s/V · 1ᵀW`` is one vector, and for ``grad_W`` a rank-one
      correction made once at the end.
    """

    @staticmethod
    def forward(ctx, hidden, weight, target, smoothing, need_grad, cdt, count, masked):
        n, d = hidden.shape
        vocab = weight.shape[0]
        vpad = padded_vocab(vocab)
        need_h = need_grad and hidden.requires_grad
        need_w = need_grad and weight.requires_grad
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = (
            torch.zeros((vpad, d), dtype=torch.float32, device=weight.device) if need_w else None
        )
        if vpad == vocab:
            w, bias = weight.to(cdt), None
        else:  # zero rows with a -inf bias: aligned matmuls, probability 0 for the padding
            w = weight.new_zeros((vpad, d), dtype=cdt)
            w[:vocab] = weight
            bias = torch.zeros(vpad, dtype=cdt, device=weight.device)
            bias[vocab:] = float("-inf")
        # 1/count: a float, or a 0-d tensor when the count lives on the device (CUDA graphs)
        scale = count.reciprocal() if torch.is_tensor(count) else 1.0 / count
        uniform = smoothing / vocab * scale  # the -s/V part of the smoothed target, scaled
        w_sum = w.sum(0, dtype=torch.float32) if need_h and smoothing else None  # 1ᵀW, (d,)
        h_sum = (
            torch.zeros(d, dtype=torch.float32, device=hidden.device)
            if need_w and smoothing
            else None
        )
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        chunk = _chunk_rows(n, max(1, CHUNK_ELEMENTS // vpad))
        for s in range(0, n, chunk):
            h, t = hidden[s : s + chunk].to(cdt), target[s : s + chunk, None]
            if masked:  # padding rows (target -100): a zero row, no loss, no gradient
                valid = t != IGNORE_INDEX
                h, t = h * valid, t.clamp(min=0)
            z = torch.addmm(bias, h, w.T) if bias is not None else h @ w.T  # (c, vpad)
            logp = _log_softmax_fp32(z)  # (c, vpad) fp32, -inf on the padding
            logp_t = logp.gather(1, t).squeeze(1)
            row = -logp_t
            if smoothing:  # -mean_v logp_v = lse - mean_v z_v, with lse = z_t - logp_t
                lse = z.gather(1, t).squeeze(1).float() - logp_t
                z_mean = z[:, :vocab].sum(-1, dtype=torch.float32) / vocab
                row = (1 - smoothing) * row + smoothing * (lse - z_mean)
            total += (row * valid.squeeze(1)).sum() if masked else row.sum()
            if need_h or need_w:
                g = torch.exp(logp, out=z)  # softmax, in the logits' buffer (dtype cdt)
                g.scatter_add_(1, t, g.new_full(t.shape, smoothing - 1.0))
                if need_h:
                    gh = (g @ w).float().mul_(scale)
                    if smoothing:
                        gh.sub_(w_sum * uniform)
                    if masked:
                        gh.mul_(valid)
                    grad_h[s : s + chunk] = gh.to(hidden.dtype)
                if need_w:  # a zero row of h adds nothing here
                    if torch.is_tensor(scale):
                        grad_w.add_(g.T @ h)
                    else:
                        grad_w.add_(g.T @ h, alpha=scale)
                    if smoothing:
                        h_sum += h.sum(0, dtype=torch.float32)
        if need_w:
            grad_w = grad_w[:vocab]
            if torch.is_tensor(scale):
                grad_w.mul_(scale)
            if smoothing:
                grad_w.sub_(h_sum[None, :] * uniform)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out if grad_h is not None else None
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    label_smoothing: float = 0.0,
    count: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the logits ``hidden @ weight.T`` against ``target``, chunked.

    Parameters
    ----------
    hidden : (n, d) the final hidden states of the labelled positions.
    weight : (V, d) the LM head's weight (GPT-2: tied to the token embedding).
    target : (n,) the next tokens.
    count : divide the summed loss by this instead of ``n``; given, rows whose target is -100
        are padding (no loss, zero gradient). A 0-d tensor keeps the count on the device, so that
        a step with padded rows can be captured in a CUDA graph.

    Same value and gradients as ``F.cross_entropy(F.linear(hidden, weight).float(), target,
    label_smoothing=...)``, without materialising the (n, V) logits in fp32.
    """
    dev = hidden.device.type
    cdt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else hidden.dtype
    need = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    with torch.autocast(dev, enabled=False):
        fn = _ChunkedLinearCrossEntropy
        loss = fn.apply(
            hidden,
            weight,
            target,
            float(label_smoothing),
            need,
            cdt,
            hidden.shape[0] if count is None else count,
            count is not None,
        )
    return loss


def backbone_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """The (backbone, LM head) of an HF causal LM, or ``None`` when the model does not split so."""
    get_head = getattr(model, "get_output_embeddings", None)
    backbone = getattr(model, "base_model", None)
    if get_head is None or backbone is None or backbone is model:
        return None
    head = get_head()
    if not isinstance(head, nn.Module):
        return None
    return backbone, head


def causal_lm_loss(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    label_smoothing: float = 0.0,
    backbone: nn.Module | None = None,
    positions: LabelPositions | None = None,
) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over the positions whose label is not ``-100``.

    Parameters
    ----------
    model : an HF causal LM (``GPT2LMHeadModel`` and the like) or any module whose output has
        ``.logits`` (B, T, V) or is that tensor.
    batch : ``input_ids`` (B, T), optional ``attention_mask`` (B, T), ``labels`` (B, T) with
        -100 = ignore (``labels`` is not read when ``positions`` is given).
    label_smoothing : as in :func:`torch.nn.functional.cross_entropy`.
    backbone : optional replacement for ``model.base_model`` (e.g. its ``torch.compile`` wrapper).
    positions : :func:`label_positions` of the labels, computed on the CPU and moved to the
        batch's device; ``None`` computes them here (which waits for the device when the labels
        live on a GPU: fine for evaluation, avoided by :func:`lorakit.train.train`).

    Returns
    -------
    (loss, n) : the mean loss (a scalar tensor, fp32) and the number n of label tokens.
    When the model splits into backbone + a bias-free linear LM head, the head runs on the n
    labelled rows only, (n, d) -> (n, V), chunk by chunk (:func:`linear_cross_entropy`).
    """
    input_ids = batch["input_ids"]
    attention_mask = batch.get("attention_mask")
    if positions is None:
        positions = label_positions(batch["labels"])
    rows, target, n, padded = positions
    parts = backbone_and_head(model)
    if parts is not None:
        body, head = parts
        body = backbone if backbone is not None else body
        hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden.last_hidden_state
        hidden = hidden.flatten(0, 1).index_select(0, rows)  # (n, d)
        if type(head) is nn.Linear and head.bias is None:
            return linear_cross_entropy(
                hidden, head.weight, target, label_smoothing, n if padded else None
            ), n
        logits = head(hidden)  # (n, V)
    else:
        out = model(input_ids=input_ids, attention_mask=attention_mask)
        logits = getattr(out, "logits", out).flatten(0, 1).index_select(0, rows)  # (n, V)
    if padded:  # the padding rows' target is -100: summed, then divided by the real count
        loss = (
            F.cross_entropy(
                logits.float(), target, label_smoothing=label_smoothing, reduction="sum"
            )
            / n
        )
        return loss, n
    loss = F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)
    return loss, n
