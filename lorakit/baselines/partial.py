"""Methods that train a subset of the base weights: BitFit, FT-Top2, full fine-tuning (paper §5.1).

None of them adds a module, so the model's function at the start is the base's, and none of
them has a count formula in the paper; their reports give ``formula=None``.

* **BitFit** (Ben Zaken et al. 2021): only the bias vectors train, every ``*.bias`` of the model:
  the attention and MLP projections' biases and the LayerNorms' shifts. For GPT-2 that is
  ``L·(3d + d + d_ff + d + 2d) + d`` (q/k/v, attention output, MLP in, MLP out, two LayerNorms,
  and the final LayerNorm).
* **FT-Top2** (the paper's FTTop2, after Li & Liang 2021): the last two Transformer blocks train,
  plus the final LayerNorm ``ln_f`` that sits on top of them. The token embedding stays frozen:
  GPT-2 ties it to the LM head, so training it would change the bottom of the network too.
* **Full fine-tuning**: every parameter trains.
"""

from __future__ import annotations

from torch import nn

from .common import MethodReport, check_fresh, check_positive_int, finish, freeze_all, gpt2_parts


def apply_bitfit(model: nn.Module) -> MethodReport:
    """BitFit: freeze everything except the bias vectors (``*.bias``).

    Raises
    ------
    ValueError
        A method already applied; the model is untouched.
    """
    check_fresh(model, "bitfit")
    names = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith(".bias"))
        if p.requires_grad:
            names.append(name)
    return finish(model, "bitfit", {}, names, None, "-")


def apply_ft_top(model: nn.Module, n_top: int = 2, include_final_ln: bool = True) -> MethodReport:
    """Fine-tune only the last ``n_top`` blocks (and ``ln_f``); FT-Top2 is ``n_top=2``.

    Parameters
    ----------
    model : HF GPT-2, changed in place.
    n_top : how many of the top blocks train, ``1 <= n_top <= L``.
    include_final_ln : also train the final LayerNorm ``ln_f``.

    Raises
    ------
    ValueError
        ``n_top`` out of range or a method already applied; the model is untouched.
    """
    check_fresh(model, "ft_top2")
    transformer, blocks = gpt2_parts(model)
    check_positive_int(n_top, "n_top", f"the model has {len(blocks)} blocks.")
    if n_top > len(blocks):
        raise ValueError(
            f"n_top={n_top} but the model has only {len(blocks)} blocks; use "
            f"n_top <= {len(blocks)} (or method 'ft' to train everything)."
        )
    freeze_all(model)
    prefix = "transformer." if transformer is not model else ""
    names = []
    for i in range(len(blocks) - n_top, len(blocks)):
        blocks[i].requires_grad_(True)
        names.append(f"{prefix}h.{i}")
    if include_final_ln:
        transformer.ln_f.requires_grad_(True)
        names.append(f"{prefix}ln_f")
    config = {"n_top": n_top, "include_final_ln": include_final_ln}
    return finish(model, "ft_top2", config, names, None, "-")


def apply_full_ft(model: nn.Module) -> MethodReport:
    """Full fine-tuning: every parameter trains (the reference all methods are compared with).

    Raises
    ------
    ValueError
        As :func:`apply_bitfit`.
    """
    check_fresh(model, "ft")
    model.requires_grad_(True)
    return finish(model, "ft", {}, ["(all)"], None, "-")
