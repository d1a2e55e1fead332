"""What the benchmarks build: GPT-2 shapes with random weights, and PEFT's LoRA on them.

The shapes are ``build_gpt2`` keyword dicts (:func:`lorakit.models.gpt2.build_gpt2`): the
full-size runs time GPT-2 medium, the ``--small`` smoke runs a tiny GPT-2 that takes seconds on
any device. :func:`peft_lora` puts the PEFT library's LoRA on a model, the reference the
benchmarks compare lorakit's layers against.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

#: GPT-2 medium's shape (Radford et al. 2019), the full-size benchmarks' model
GPT2_MEDIUM = dict(n_layer=24, n_embd=1024, n_head=16, n_positions=1024, vocab_size=50257)
#: a tiny GPT-2 for the ``--small`` smoke runs
TINY_GPT2 = dict(n_layer=2, n_embd=64, n_head=2, n_positions=128, vocab_size=512)


def peft_lora(model: nn.Module, lora: dict, targets: Sequence[str]) -> nn.Module:
    """Inject PEFT's LoRA into the HF GPT-2 ``model`` in place; returns PEFT's wrapper.

    Parameters
    ----------
    model : a ``GPT2LMHeadModel`` (its projections are ``Conv1D``, weights stored (in, out)).
    lora : ``{"r", "alpha", "dropout"}``, the same numbers lorakit's rows use.
    targets : PEFT module names, e.g. ``["c_attn"]``.

    Raises
    ------
    ImportError
        If ``peft`` is not installed (``pip install peft``).
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=list(targets),
        fan_in_fan_out=True,  # GPT-2's Conv1D stores its weight (in, out)
        bias="none",
    )
    return get_peft_model(model, config)
