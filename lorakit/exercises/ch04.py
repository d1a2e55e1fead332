"""Chapter 4 exercises: LoRA inside GPT-2 (paper §4, §4.2): how many parameters, how much memory.

The references are the notebook's solutions, the same code (the notebook's cells carry
``# sync: lorakit.exercises.ch04.<name>``); later cells use these, so a student version runs to
the end whatever state the learner's exercises are in.
"""

from __future__ import annotations

from lorakit.exercises.compare import check_int_cases
from lorakit.exercises.core import register

# ----------------------------------------------------------------------------- references


def lora_param_count(n_layers: int, d_model: int, r: int, n_matrices: int = 2) -> int:
    """Trainable parameters of LoRA on ``n_matrices`` square (d x d) attention weights per layer.

    The paper's |Θ| = 2 · L̂ · d_model · r (§4.2, §5.1), where L̂ = n_matrices · n_layers is the
    number of adapted weight matrices and each one gets A (r, d) and B (d, r).
    """
    adapted = n_matrices * n_layers
    return 2 * adapted * d_model * r


def adam_memory_bytes(n_params: int, n_trainable: int, bytes_per_value: int = 2) -> int:
    """Bytes that training with Adam holds for the model: every weight, plus for each trainable
    parameter its gradient and Adam's two moment estimates (activations not counted).

    ``bytes_per_value`` is 2 for fp16/bf16, 4 for fp32.
    """
    return bytes_per_value * (n_params + 3 * n_trainable)


# ----------------------------------------------------------------------------- typical mistakes


def _count_one_factor(n_layers, d_model, r, n_matrices=2):
    return n_matrices * n_layers * d_model * r  # forgets that A and B each hold d·r


def _count_ignores_matrices(n_layers, d_model, r, n_matrices=2):
    return 2 * n_layers * d_model * r  # L̂ = L: one matrix per layer


def _count_with_frozen(n_layers, d_model, r, n_matrices=2):
    adapted = n_matrices * n_layers  # counts the frozen W0 (d x d) as well
    return 2 * adapted * d_model * r + adapted * d_model * d_model


def _adam_no_grads(n_params, n_trainable, bytes_per_value=2):
    return bytes_per_value * (n_params + 2 * n_trainable)


def _adam_all_params(n_params, n_trainable, bytes_per_value=2):
    return bytes_per_value * 4 * n_params  # as if everything were trained


def _adam_fixed_fp32(n_params, n_trainable, bytes_per_value=2):
    return 4 * (n_params + 3 * n_trainable)


# ----------------------------------------------------------------------------- checkers


@register("ch04.lora_param_count", reference=lora_param_count,
          wrong=[_count_one_factor, _count_ignores_matrices, _count_with_frozen])
def _check_lora_param_count(candidate) -> None:
    cases = [((24, 1024, 4), 393_216),          # GPT-2 M, q and v: the paper's 0.35M
             ((96, 12288, 4), 18_874_368),      # GPT-3 175B, q and v: about 18M
             ((12, 768, 1, 1), 18_432),         # one matrix per layer
             ((2, 10, 3, 4), 480)]
    check_int_cases("lora_param_count", candidate, cases)


@register("ch04.adam_memory_bytes", reference=adam_memory_bytes,
          wrong=[_adam_no_grads, _adam_all_params, _adam_fixed_fp32])
def _check_adam_memory_bytes(candidate) -> None:
    cases = [((175_000_000_000, 175_000_000_000, 2), 1_400_000_000_000),  # GPT-3 full FT, fp16
             ((175_000_000_000, 18_874_368, 2), 350_113_246_208),        # GPT-3 LoRA
             ((1000, 10, 4), 4120), ((1000, 0, 2), 2000)]
    check_int_cases("adam_memory_bytes", candidate, cases)
