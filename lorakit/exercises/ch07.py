"""Chapter 7 exercises: the baselines' parameter counts (paper §5.1) and latency ratios (Table 1).

The references are the notebook's solutions, the same code (the notebook's cells carry
``# sync: lorakit.exercises.ch07.<name>``); later cells use these or :mod:`lorakit.analysis`, so
a student version runs to the end whatever state the learner's exercises are in.
"""

from __future__ import annotations

import statistics

from lorakit.exercises.compare import check_int_cases
from lorakit.exercises.core import fail, register

# ----------------------------------------------------------------------------- references


def adapter_param_count(n_adapters: int, d_model: int, r: int, n_layernorms: int = 0) -> int:
    """Trainable parameters of ``n_adapters`` bottleneck adapters and ``n_layernorms`` LayerNorms.

    The paper's |Θ| = L̂_Adpt·(2·d·r + r + d) + 2·L̂_LN·d (§5.1): each adapter has a down
    projection d -> r (d·r weights + r biases) and an up projection r -> d (r·d weights + d
    biases); each trained LayerNorm has a gain and a shift of size d.
    """
    per_adapter = 2 * d_model * r + r + d_model
    return n_adapters * per_adapter + 2 * n_layernorms * d_model


def prefix_layer_param_count(n_layers: int, d_model: int, l_p: int, l_i: int) -> int:
    """Trainable parameters of prefix-layer tuning: L·d·(l_p + l_i) (§5.1).

    Every one of the ``l_p + l_i`` special tokens has a trainable d-dimensional activation at
    each of the L layers.
    """
    return n_layers * d_model * (l_p + l_i)


def latency_ratios(times_ms: dict[str, list[float]], base: str = "base") -> dict[str, float]:
    """Mean forward time of each method divided by the base's mean (Table 1's comparison).

    ``times_ms`` maps a method's name to its per-trial times (ms) at one batch/sequence shape;
    the result maps every name (``base`` included, which gives 1.0) to its ratio.
    """
    base_mean = statistics.fmean(times_ms[base])
    return {name: statistics.fmean(times) / base_mean for name, times in times_ms.items()}


# ----------------------------------------------------------------------------- typical mistakes


def _adapter_no_biases(n_adapters, d_model, r, n_layernorms=0):
    return n_adapters * 2 * d_model * r + 2 * n_layernorms * d_model


def _adapter_one_vector_per_ln(n_adapters, d_model, r, n_layernorms=0):
    return n_adapters * (2 * d_model * r + r + d_model) + n_layernorms * d_model


def _adapter_one_projection(n_adapters, d_model, r, n_layernorms=0):
    return n_adapters * (d_model * r + r + d_model) + 2 * n_layernorms * d_model


def _prefix_embed_count(n_layers, d_model, l_p, l_i):
    return d_model * (l_p + l_i)  # PreEmbed's count: one layer only


def _prefix_no_infix(n_layers, d_model, l_p, l_i):
    return n_layers * d_model * l_p


def _prefix_keys_and_values(n_layers, d_model, l_p, l_i):
    return 2 * n_layers * d_model * (l_p + l_i)  # the key/value variant, not the paper's PreLayer


def _ratios_inverted(times_ms, base="base"):
    base_mean = statistics.fmean(times_ms[base])
    return {name: base_mean / statistics.fmean(t) for name, t in times_ms.items()}


def _ratios_of_minimum(times_ms, base="base"):
    return {name: min(t) / min(times_ms[base]) for name, t in times_ms.items()}


def _ratios_without_base(times_ms, base="base"):
    base_mean = statistics.fmean(times_ms[base])
    return {name: statistics.fmean(t) / base_mean for name, t in times_ms.items() if name != base}


# ----------------------------------------------------------------------------- checkers


@register(
    "ch07.adapter_param_count",
    reference=adapter_param_count,
    wrong=[_adapter_no_biases, _adapter_one_vector_per_ln, _adapter_one_projection],
)
def _check_adapter_param_count(candidate) -> None:
    cases = [
        ((48, 1024, 4, 48), 540_864),  # GPT-2 M, AdapterH r=4 (two per layer, ln_1, ln_2)
        ((24, 1024, 4, 24), 270_432),  # GPT-2 M, AdapterL r=4 (one per layer, its own LN)
        ((2, 10, 3), 146),  # no LayerNorm trained
        ((1, 8, 1, 1), 41),
    ]
    check_int_cases("adapter_param_count", candidate, cases)


@register(
    "ch07.prefix_layer_param_count",
    reference=prefix_layer_param_count,
    wrong=[_prefix_embed_count, _prefix_no_infix, _prefix_keys_and_values],
)
def _check_prefix_layer_param_count(candidate) -> None:
    cases = [
        ((24, 1024, 10, 10), 491_520),  # GPT-2 M, l_p = l_i = 10
        ((96, 12288, 8, 8), 18_874_368),  # GPT-3 175B, l_p = l_i = 8 (the paper's PreLayer row)
        ((12, 768, 12, 4), 147_456),  # our gpu Table 3 setting: as many as LoRA r=4
        ((3, 5, 2, 0), 30),
    ]
    check_int_cases("prefix_layer_param_count", candidate, cases)


@register(
    "ch07.latency_ratios",
    reference=latency_ratios,
    wrong=[_ratios_inverted, _ratios_of_minimum, _ratios_without_base],
)
def _check_latency_ratios(candidate) -> None:
    times = {
        "base": [10.0, 12.0, 14.0],
        "adapter_h": [13.0, 15.0, 26.0],
        "lora_merged": [11.0, 12.0, 13.0],
    }
    got = candidate(times)
    if not isinstance(got, dict):
        fail(f"latency_ratios should return a dict name -> ratio, got {type(got).__name__}")
    expected = latency_ratios(times)
    if set(got) != set(expected):
        fail(
            f"expected a ratio for each of {sorted(expected)} (the base too: 1.0), "
            f"got keys {sorted(got)}"
        )
    for name, value in expected.items():
        if not isinstance(got[name], float) or abs(got[name] - value) > 1e-9 * value:
            fail(
                f"ratio of {name!r}: expected {value:.4f} (mean time / mean time of the base), "
                f"got {got[name]!r}"
            )
    other = candidate({"ref": [2.0, 2.0], "x": [3.0, 5.0]}, base="ref")
    if not isinstance(other, dict) or abs(other.get("x", 0.0) - 2.0) > 1e-9:
        fail(f"with base='ref', ratio of 'x' should be 4.0 / 2.0 = 2.0, got {other!r}")
