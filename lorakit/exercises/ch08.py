"""Chapter 8 exercises: which weights, which rank (paper §7.1, Tables 5 and 6).

The references are the notebook's solutions, the same code (cells carry ``# sync: ...``):
``rank_for_budget`` lives here, ``clear_difference`` in :mod:`lorakit.experiments.which_rank`,
which uses it to say whether a difference in Table 5 is beyond seed noise.
"""

from __future__ import annotations

import statistics

from lorakit.exercises.compare import check_int_cases
from lorakit.exercises.core import assert_equal, fail, register
from lorakit.experiments.which_rank import clear_difference

# ----------------------------------------------------------------------------- references


def rank_for_budget(budget: int, n_layers: int, d_model: int, n_matrices: int) -> int:
    """The LoRA rank r that spends exactly ``budget`` trainable parameters on ``n_matrices``
    square (d_model x d_model) weights in each of ``n_layers`` layers: budget = 2·L̂·d·r with
    L̂ = n_matrices · n_layers (paper §7.1). Raises ValueError if no whole r >= 1 does.
    """
    per_rank = 2 * n_matrices * n_layers * d_model
    if budget < per_rank or budget % per_rank:
        raise ValueError(
            f"a budget of {budget} is not a whole multiple of 2·L̂·d = {per_rank}; "
            "no integer rank r >= 1 spends it exactly"
        )
    return budget // per_rank


# ----------------------------------------------------------------------------- typical mistakes


def _budget_no_two(budget, n_layers, d_model, n_matrices):
    return budget // (n_matrices * n_layers * d_model)  # forgets that A and B each hold d·r


def _budget_rounds(budget, n_layers, d_model, n_matrices):
    return max(1, budget // (2 * n_matrices * n_layers * d_model))  # never says "impossible"


def _budget_per_layer(budget, n_layers, d_model, n_matrices):
    return budget // (2 * n_matrices * d_model)  # forgets the layers


def _diff_population_std(a, b):
    return abs(statistics.fmean(a) - statistics.fmean(b)) > sum(
        statistics.pstdev(x) for x in (a, b)
    )


def _diff_at_least(a, b):
    spread = sum(statistics.stdev(x) if len(x) > 1 else 0.0 for x in (a, b))
    return abs(statistics.fmean(a) - statistics.fmean(b)) >= spread


def _diff_signed(a, b):
    spread = sum(statistics.stdev(x) if len(x) > 1 else 0.0 for x in (a, b))
    return statistics.fmean(b) - statistics.fmean(a) > spread


# ----------------------------------------------------------------------------- checkers


@register(
    "ch08.rank_for_budget",
    reference=rank_for_budget,
    wrong=[_budget_no_two, _budget_rounds, _budget_per_layer],
)
def _check_rank_for_budget(candidate) -> None:
    gpt3 = 18_874_368  # the paper's Table 5 budget on GPT-3 175B (96 layers, d = 12288)
    cases = [
        ((gpt3, 96, 12288, 1), 8),
        ((gpt3, 96, 12288, 2), 4),
        ((gpt3, 96, 12288, 4), 2),
        ((393_216, 24, 1024, 2), 4),
        ((147_456, 12, 768, 4), 2),
    ]
    check_int_cases("rank_for_budget", candidate, cases)
    for args in ((1000, 2, 10, 3), (100, 2, 10, 4)):
        try:
            got = candidate(*args)
        except ValueError:
            continue
        fail(
            f"rank_for_budget{args} returned {got!r}; no whole rank spends that budget "
            "exactly, so it should raise ValueError"
        )


@register(
    "ch08.clear_difference",
    reference=clear_difference,
    wrong=[_diff_population_std, _diff_at_least, _diff_signed],
)
def _check_clear_difference(candidate) -> None:
    cases = [
        (([10.0, 10.2], [12.0, 12.1]), True),
        (([12.0, 12.1], [10.0, 10.2]), True),
        (([0.0, 1.0], [1.2, 2.2]), False),  # sample std (n-1): 0.707 each, gap 1.2
        (([1.0], [1.5]), True),
        (([3.0], [3.0]), False),
        (([5.0, 5.0, 5.0], [5.0, 5.0]), False),
    ]
    for (a, b), expected in cases:
        got = candidate(list(a), list(b))
        if not isinstance(got, bool):
            fail(f"clear_difference({a}, {b}) should return a bool, got {type(got).__name__}")
        assert_equal(f"clear_difference({a}, {b})", got, expected)
