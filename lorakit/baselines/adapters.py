"""Adapter tuning: AdapterH (Houlsby et al. 2019) and AdapterL (Lin et al. 2020), paper §5.1.

An adapter is a bottleneck MLP with a skip connection, ``x -> x + up(act(down(x)))``, with
``down: d -> r`` and ``up: r -> d``. It holds ``2·d·r + r + d`` parameters (two weight matrices,
two bias vectors). Its up-projection starts at exactly zero, so an adapted model computes the
same function as its base until training moves it (as LoRA starts with ``B = 0``).

Where the adapters sit in a GPT-2 block ``h = x + Attn(LN1(x)); y = h + MLP(LN2(h))``:

* **AdapterH** wraps the attention sub-layer and the MLP sub-layer, so the adapter acts on the
  sub-layer's output (after its output projection and dropout) and *before* the residual add:
  ``h = x + Adapter(Attn(LN1(x)))`` and ``y = h + Adapter(MLP(LN2(h)))``. Two adapters per
  layer; the block's own LayerNorms (``ln_1``, ``ln_2``) train too, as in Houlsby et al.
  Count: ``L_Adpt·(2dr + r + d) + 2·L_LN·d`` with ``L_Adpt = L_LN = 2·L``.
* **AdapterL** puts one adapter, which starts with a new LayerNorm, on top of each block: it acts
  on the block's output ``y``, the residual stream after the MLP's residual add,
  ``y' = y + up(ReLU(down(LN(y))))`` (Lin et al. 2020, eq. 1, whose ``H_i`` is the output of
  layer ``i``; the LoRA paper's "after the MLP module and after a LayerNorm"). The adapter is the
  block's ``adapter`` attribute, applied by a forward hook, so the block and its weights keep
  their names. Count: the same formula with ``L_Adpt = L_LN = L``.

Each wrapper calls the wrapped module unchanged (``block.attn`` stays a ``GPT2Attention``, so SDPA
and the KV cache work as before); the adapter is one extra small module after it. That extra
module is sequential work that cannot be merged away, which is what the latency benchmark
(:mod:`lorakit.bench.latency`, the paper's Table 1) measures.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import MethodReport, check_fresh, check_positive_int, finish, freeze_all, gpt2_parts

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class BottleneckAdapter(nn.Module):
    """``x + up(act(down(norm(x))))`` with ``up`` initialised to zero.

    Parameters
    ----------
    d : model width.
    r : bottleneck width (``r >= 1``).
    activation : ``"relu"``, ``"gelu"`` or ``"tanh"``.
    layer_norm : put a (trainable) LayerNorm on the adapter's input (AdapterL).
    init_std : standard deviation of the Gaussian init of ``down.weight``.

    Shapes: input and output ``(..., d)``.
    """

    def __init__(
        self,
        d: int,
        r: int,
        activation: str = "gelu",
        layer_norm: bool = False,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        check_positive_int(r, "The adapter bottleneck r", "r = 8 to 64 is typical.")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}."
            )
        self.norm = nn.LayerNorm(d) if layer_norm else nn.Identity()
        self.down = nn.Linear(d, r)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(r, d)
        nn.init.normal_(self.down.weight, std=init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # the adapter starts as the identity map
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(self.norm(x))))


class WithAdapter(nn.Module):
    """Run ``module`` unchanged, then ``adapter`` on its output (the first element if a tuple)."""

    def __init__(self, module: nn.Module, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.module = module
        self.adapter = adapter

    def forward(self, *args, **kwargs):
        out = self.module(*args, **kwargs)
        if isinstance(out, tuple):  # GPT2Attention returns (output, attention weights)
            return (self.adapter(out[0]), *out[1:])
        return self.adapter(out)


def _adapt_block_output(block: nn.Module, args, output):
    """Forward hook of an AdapterL block: its ``adapter`` on the block's output (the hidden
    states, the first element when the block returns a tuple)."""
    if isinstance(output, tuple):
        return (block.adapter(output[0]), *output[1:])
    return block.adapter(output)


def _apply(
    model: nn.Module,
    method: str,
    r: int,
    activation: str,
    sites: tuple[str, ...],
    adapter_norm: bool,
    train_block_ln: bool,
) -> MethodReport:
    check_fresh(model, method)
    check_positive_int(r, "The adapter bottleneck r", "r = 8 to 64 is typical.")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}.")
    transformer, blocks = gpt2_parts(model)
    d = (
        transformer.config.n_embd
        if hasattr(transformer, "config")
        else transformer.wte.embedding_dim
    )
    ref = transformer.wte.weight
    freeze_all(model)
    prefix = "transformer." if transformer is not model else ""
    modules, n_ln = [], 0
    for i, block in enumerate(blocks):
        for site in sites:
            adapter = BottleneckAdapter(d, r, activation, layer_norm=adapter_norm)
            adapter = adapter.to(ref.device, ref.dtype)
            if site == "block":  # on the block's output, after its last residual add
                block.adapter = adapter
                block.register_forward_hook(_adapt_block_output)
                modules.append(f"{prefix}h.{i}.adapter")
            else:  # on a sub-layer's output, before its residual add
                setattr(block, site, WithAdapter(getattr(block, site), adapter))
                modules.append(f"{prefix}h.{i}.{site}.adapter")
            n_ln += int(adapter_norm)
        if train_block_ln:
            for ln in ("ln_1", "ln_2"):
                getattr(block, ln).requires_grad_(True)
                modules.append(f"{prefix}h.{i}.{ln}")
                n_ln += 1
    n_adpt = len(blocks) * len(sites)
    formula = n_adpt * (2 * d * r + r + d) + 2 * n_ln * d
    text = f"L_Adpt*(2*d*r + r + d) + 2*L_LN*d with L_Adpt={n_adpt}, L_LN={n_ln}, d={d}, r={r}"
    config = {"r": r, "activation": activation}
    if method == "adapter_h":
        config["train_layernorm"] = train_block_ln
    return finish(model, method, config, modules, formula, text)


def apply_adapter_h(
    model: nn.Module, r: int = 8, activation: str = "gelu", train_layernorm: bool = True
) -> MethodReport:
    """AdapterH: adapters after the attention and after the MLP of every block (Houlsby et al.).

    Parameters
    ----------
    model : HF GPT-2, changed in place (all base weights frozen).
    r : bottleneck width.
    activation : the adapter's nonlinearity.
    train_layernorm : also train each block's ``ln_1`` and ``ln_2`` (Houlsby et al. do).

    Returns
    -------
    MethodReport
        ``formula`` = ``L_Adpt·(2dr + r + d) + 2·L_LN·d`` with ``L_Adpt = 2L`` and
        ``L_LN = 2L`` (or 0 without ``train_layernorm``).

    Raises
    ------
    ValueError
        ``r <= 0``, an unknown activation, or a method already applied; the model is untouched.
    """
    return _apply(
        model,
        "adapter_h",
        r,
        activation,
        ("attn", "mlp"),
        adapter_norm=False,
        train_block_ln=train_layernorm,
    )


def apply_adapter_l(model: nn.Module, r: int = 8, activation: str = "relu") -> MethodReport:
    """AdapterL: one adapter, with its own LayerNorm, on the output of every block (Lin et al.),
    i.e. after the MLP and its residual add.

    Parameters
    ----------
    model : HF GPT-2, changed in place (all base weights frozen).
    r : bottleneck width.
    activation : the adapter's nonlinearity (Lin et al. use ReLU).

    Returns
    -------
    MethodReport
        ``formula`` = ``L_Adpt·(2dr + r + d) + 2·L_LN·d`` with ``L_Adpt = L_LN = L``.

    Raises
    ------
    ValueError
        ``r <= 0``, an unknown activation, or a method already applied; the model is untouched.
    """
    return _apply(
        model, "adapter_l", r, activation, ("block",), adapter_norm=True, train_block_ln=False
    )
