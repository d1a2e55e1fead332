"""The paper's baselines (section 5.1) for HF GPT-2, each applied in one call, and a dispatcher.

::

    from lorakit.baselines import apply_method
    report = apply_method(model, "adapter_h", r=16)   # in place; freezes what it should
    print(report)                                      # trainable count and the paper's formula
    batches = report.wrap_batches(batches)             # inserts prefix tokens (identity otherwise)
    lorakit.train.train(model, batches, cfg)

=================  =========================================  ==================================
name               method                                     trainable parameters
=================  =========================================  ==================================
``lora``           LoRA (:func:`lorakit.apply_lora`)          ``2·L̂·d·r``
``adapter_h``      AdapterH, Houlsby et al. 2019              ``L̂_Adpt·(2dr + r + d) + 2·L̂_LN·d``
``adapter_l``      AdapterL, Lin et al. 2020                  same formula, one adapter per layer
``prefix_embed``   PreEmbed, special-token embeddings         ``d·(l_p + l_i)``
``prefix_layer``   PreLayer, special-token activations        ``L·d·(l_p + l_i)``
``bitfit``         BitFit, biases only                        all bias vectors
``ft_top2``        FT-Top2, the last two blocks (+ ``ln_f``)  two blocks
``ft``             full fine-tuning                           everything
=================  =========================================  ==================================

A second method on the same model is an error: build a fresh base for each method. Save and
load a method's trainable state with :func:`save_method` / :func:`load_method`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .adapters import BottleneckAdapter, WithAdapter, apply_adapter_h, apply_adapter_l
from .common import MethodReport, applied_method, check_fresh, finish
from .partial import apply_bitfit, apply_ft_top, apply_full_ft
from .prefix import PrefixKeyValue, PrefixLayerInput, apply_prefix_embed, apply_prefix_layer
from .prompt import PromptEmbedding, PromptTokens
from .state import load_method, read_method, save_method

METHODS = (
    "lora",
    "adapter_h",
    "adapter_l",
    "prefix_embed",
    "prefix_layer",
    "bitfit",
    "ft_top2",
    "ft",
)


def apply_lora_method(model: nn.Module, **kwargs: Any) -> MethodReport:
    """LoRA through :func:`lorakit.apply_lora`, reported like the baselines.

    ``kwargs`` are :class:`lorakit.LoRAConfig` fields (``r``, ``alpha``, ``targets``, ...). The
    formula ``2·L̂·d·r`` is given when every adapted matrix is square (q, k, v, o); else ``None``.
    """
    from lorakit.lora import LoRAConfig, apply_lora, lora_factors

    check_fresh(model, "lora")
    config = LoRAConfig(**kwargs)  # validates before the model changes
    lora_report = apply_lora(model, config)
    factors = lora_factors(model)
    square = all(A.shape[1] == B.shape[0] for A, B in factors.values())
    d = model.config.n_embd
    formula = 2 * len(factors) * d * config.r if square else None
    text = f"2*L_hat*d*r with L_hat={len(factors)}, d={d}, r={config.r}"
    return finish(model, "lora", config.to_dict(), list(lora_report.adapted), formula, text)


_APPLY = {
    "lora": apply_lora_method,
    "adapter_h": apply_adapter_h,
    "adapter_l": apply_adapter_l,
    "prefix_embed": apply_prefix_embed,
    "prefix_layer": apply_prefix_layer,
    "bitfit": apply_bitfit,
    "ft_top2": apply_ft_top,
    "ft": apply_full_ft,
}


def apply_method(model: nn.Module, name: str, **kwargs: Any) -> MethodReport:
    """Apply the method called ``name`` (one of :data:`METHODS`) to ``model`` in place.

    Parameters
    ----------
    model : an HF ``GPT2LMHeadModel`` that carries no method yet.
    name : ``"lora"``, ``"adapter_h"``, ``"adapter_l"``, ``"prefix_embed"``, ``"prefix_layer"``,
        ``"bitfit"``, ``"ft_top2"`` or ``"ft"`` (dashes are accepted too).
    **kwargs : the method's settings, e.g. ``r=4, alpha=32, targets=["q", "v"]`` for LoRA,
        ``r=16`` for the adapters, ``l_p=10, l_i=10, separator_ids=[...]`` for the prefixes.

    Returns
    -------
    MethodReport

    Raises
    ------
    ValueError
        An unknown name, bad settings, or a method already applied; the model is untouched.
    """
    key = str(name).replace("-", "_")
    if key not in _APPLY:
        raise ValueError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.")
    try:
        return _APPLY[key](model, **kwargs)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise TypeError(
                f"{key}: {err}. See help(lorakit.baselines.{_APPLY[key].__name__}) "
                "for its settings."
            ) from err
        raise


__all__ = [
    "METHODS",
    "BottleneckAdapter",
    "MethodReport",
    "PrefixKeyValue",
    "PrefixLayerInput",
    "PromptEmbedding",
    "PromptTokens",
    "WithAdapter",
    "apply_adapter_h",
    "apply_adapter_l",
    "apply_bitfit",
    "apply_ft_top",
    "apply_full_ft",
    "apply_lora_method",
    "apply_method",
    "apply_prefix_embed",
    "apply_prefix_layer",
    "applied_method",
    "load_method",
    "read_method",
    "save_method",
]
