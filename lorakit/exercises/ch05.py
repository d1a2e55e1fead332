"""Chapter 5 exercises: how much the base was trained, what a unigram model scores, a probe, and
a sum whose bits do not depend on the order its terms arrive in.

The references are the notebook's solutions (cells carry ``# sync: lorakit.exercises.ch05.<name>``);
the checkers compare them with :mod:`lorakit.models.specs` (the parameter count behind the size
rule) and :mod:`lorakit.models.probes` (the pretraining record's unigram perplexity), which add
input checks to the same maths.
"""

from __future__ import annotations

import math

import torch

from lorakit.exercises.compare import as_number, assert_number
from lorakit.exercises.core import fail, register
from lorakit.models import probes
from lorakit.models.specs import gpt2_param_count

# ----------------------------------------------------------------------------- references


def tokens_per_parameter(
    tokens_seen: int, n_layer: int, n_embd: int, vocab_size: int, n_positions: int
) -> float:
    """Training tokens per parameter of a GPT-2 whose LM head is tied to the token embedding.

    A block holds the attention's fused q/k/v projection (d, 3d) and output projection (d, d),
    the MLP's (d, 4d) and (4d, d), each with a bias, and two LayerNorms (weight and bias, d each).
    Around the blocks: the token embedding (V, d), the position embedding (P, d), a final
    LayerNorm. Hoffmann et al. (2022) train compute-optimally at about 20 tokens per parameter.
    """
    ### BEGIN SOLUTION
    d = n_embd
    block = (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d) + 4 * d
    params = n_layer * block + vocab_size * d + n_positions * d + 2 * d
    return tokens_seen / params
    ### END SOLUTION


def unigram_perplexity(train_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int) -> float:
    """Perplexity on ``eval_ids`` (N_eval,) of the unigram model counted on ``train_ids``
    (N_train,), with add-one smoothing: p(t) = (count(t) + 1) / (N_train + vocab_size)."""
    ### BEGIN SOLUTION
    counts = torch.bincount(train_ids.reshape(-1), minlength=vocab_size).double() + 1.0
    log_p = (counts / counts.sum()).log()
    return math.exp(-log_p[eval_ids.reshape(-1)].mean().item())
    ### END SOLUTION


def copy_prompt(name: str, facts: dict[str, str]) -> str:
    """A prompt that mentions the venue ``name`` once and ends where the name comes next.

    ``facts`` may hold the venue's ``eatType`` and ``area`` (as in an E2E meaning
    representation). No trailing space: byte-level BPE writes the space before a word as part of
    the word's first token, so " Name" is what the model must produce.
    """
    ### BEGIN SOLUTION
    kind = facts.get("eatType", "restaurant")
    area = facts.get("area", "city centre")
    return f"There is a {kind} called {name} in the {area}. The name of the {kind} is"
    ### END SOLUTION


def fixed_order_sum(
    values: torch.Tensor, index: torch.Tensor, n_bins: int, arrival: torch.Tensor
) -> torch.Tensor:
    """Float32 sums of ``values`` (N,) into ``n_bins`` bins by ``index`` (N,), whose bits do not
    depend on ``arrival``.

    ``arrival`` (a permutation of 0..N-1) is the order in which the contributions reach their
    bins, as the threads of a GPU kernel finish. Adding them in that order, as atomic adds do,
    gives sums that change in their last bits when the order changes: float addition is not
    associative. A deterministic kernel first sorts the contributions by bin, keeping their
    positions in order within a bin, and then adds each bin's in that fixed order.
    """
    ### BEGIN SOLUTION
    out = torch.zeros(n_bins, dtype=torch.float32)
    for i in torch.argsort(index, stable=True).tolist():  # by bin, then by position
        out[index[i]] += values[i].float()
    return out
    ### END SOLUTION


# ----------------------------------------------------------------------------- typical mistakes


def _tpp_untied(tokens_seen, n_layer, n_embd, vocab_size, n_positions):
    # counts the LM head as a second (V, d) matrix: GPT-2 ties it to the token embedding
    d = n_embd
    params = n_layer * (12 * d * d + 13 * d) + 2 * vocab_size * d + n_positions * d + 2 * d
    return tokens_seen / params


def _tpp_no_biases(tokens_seen, n_layer, n_embd, vocab_size, n_positions):
    # only the weight matrices: forgets biases and LayerNorms
    d = n_embd
    return tokens_seen / (n_layer * 12 * d * d + vocab_size * d + n_positions * d)


def _tpp_non_embedding(tokens_seen, n_layer, n_embd, vocab_size, n_positions):
    # Kaplan et al.'s non-embedding count: not the parameters the model holds
    return tokens_seen / (n_layer * (12 * n_embd * n_embd + 13 * n_embd))


def _tpp_inverted(tokens_seen, n_layer, n_embd, vocab_size, n_positions):
    return gpt2_param_count(n_layer, n_embd, vocab_size, n_positions) / tokens_seen


def _uni_unsmoothed(train_ids, eval_ids, vocab_size):
    counts = torch.bincount(train_ids, minlength=vocab_size).double()
    return math.exp(-(counts / counts.sum()).log()[eval_ids].mean().item())


def _uni_counts_eval(train_ids, eval_ids, vocab_size):
    # estimates the frequencies on the text it is scored on
    counts = torch.bincount(eval_ids, minlength=vocab_size).double() + 1.0
    return math.exp(-(counts / counts.sum()).log()[eval_ids].mean().item())


def _uni_cross_entropy(train_ids, eval_ids, vocab_size):
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1.0
    return -(counts / counts.sum()).log()[eval_ids].mean().item()  # the loss, not its exp


def _uni_wrong_norm(train_ids, eval_ids, vocab_size):
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1.0
    return math.exp(-(counts / train_ids.numel()).log()[eval_ids].mean().item())


def _prompt_answer_given(name, facts):
    return f"There is a restaurant called {name}. The name of the restaurant is {name}"


def _prompt_trailing_space(name, facts):
    return f"There is a restaurant called {name}. The name of the restaurant is "


def _prompt_no_name(name, facts):
    return "There is a restaurant in the city centre. The name of the restaurant is"


def _prompt_not_controlled(name, facts):
    size = "large" if len(name) > 14 else "small"
    return f"There is a {size} restaurant called {name}. The name of the restaurant is"


def _sum_in_arrival_order(values, index, n_bins, arrival):
    # what an atomic add does: the bits depend on which thread finished first
    out = torch.zeros(n_bins, dtype=torch.float32)
    for i in arrival.tolist():
        out[index[i]] += values[i]
    return out


def _sum_index_add_arrival(values, index, n_bins, arrival):
    # the same, in one call: index_add_ adds in the order it is given
    return torch.zeros(n_bins).index_add_(0, index[arrival], values[arrival])


def _sum_half(values, index, n_bins, arrival):
    # a fixed order, but accumulated in float16: large terms overflow, small ones vanish
    out = torch.zeros(n_bins, dtype=torch.float16)
    for i in range(values.numel()):
        out[index[i]] += values[i].half()
    return out.float()


def _sum_ignores_bins(values, index, n_bins, arrival):
    return torch.full((n_bins,), float(values.double().sum()), dtype=torch.float32)


# ----------------------------------------------------------------------------- checkers

_SHAPES = [  # (n_layer, n_embd, vocab_size, n_positions)
    (12, 768, 16384, 1024),  # the gpu base
    (4, 256, 8192, 256),  # the cpu base
    (2, 64, 2048, 128),  # the ci base
    (24, 1024, 50257, 1024),  # GPT-2 medium with its real vocabulary
    (3, 48, 500, 64),
]


@register(
    "ch05.tokens_per_parameter",
    reference=tokens_per_parameter,
    wrong=[_tpp_untied, _tpp_no_biases, _tpp_non_embedding, _tpp_inverted],
)
def _check_tokens_per_parameter(candidate) -> None:
    for i, shape in enumerate(_SHAPES):
        tokens = 17_825_792 * (i + 1)
        got = as_number(
            f"tokens_per_parameter({tokens}, {', '.join(map(str, shape))})",
            candidate(tokens, *shape),
        )
        want = tokens / gpt2_param_count(*shape)
        if not math.isfinite(got) or abs(got - want) > 1e-9 * abs(want):
            n_layer, d, vocab, positions = shape
            fail(
                f"tokens_per_parameter({tokens:,}, n_layer={n_layer}, n_embd={d}, "
                f"vocab_size={vocab}, n_positions={positions}) = {got:.6g}, expected {want:.6g} "
                f"({gpt2_param_count(*shape):,} parameters, the LM head tied to the embedding)"
            )


@register(
    "ch05.unigram_perplexity",
    reference=unigram_perplexity,
    wrong=[_uni_unsmoothed, _uni_counts_eval, _uni_cross_entropy, _uni_wrong_norm],
)
def _check_unigram_perplexity(candidate) -> None:
    g = torch.Generator().manual_seed(5)
    zipf = 1.0 / torch.arange(1, 41).double()  # a few frequent tokens, many rare ones

    def draw(n: int) -> torch.Tensor:
        return torch.multinomial(zipf, n, replacement=True, generator=g)

    cases = [
        (torch.tensor([0, 0, 1]), torch.tensor([0, 3]), 4),  # token 3 never seen in training
        (draw(2000), draw(300), 50),  # ids 40..49 never occur at all
        (torch.randint(0, 7, (64,), generator=g), torch.randint(0, 7, (9,), generator=g), 7),
    ]
    for i, (train, held, vocab) in enumerate(cases):
        what = f"unigram_perplexity (case {i}: {train.numel()} training tokens, V={vocab})"
        got = as_number(what, candidate(train.clone(), held.clone(), vocab))
        if not math.isfinite(got):
            fail(
                f"{what} = {got}: a token that training never saw needs a probability > 0 "
                "(add one to every count)"
            )
        assert_number(
            what, got, probes.unigram_perplexity(train, held, vocab), atol=1e-9, rtol=1e-7
        )


_VENUES = [
    ("The Gilded Fig", {"eatType": "pub", "area": "riverside", "food": "Italian"}),
    ("Hartley's", {"eatType": "coffee shop", "area": "city centre"}),
    ("Willow Yard", {}),
    ("The Otter and Lantern", {"eatType": "restaurant", "food": "French"}),
]


@register(
    "ch05.copy_prompt",
    reference=copy_prompt,
    wrong=[_prompt_answer_given, _prompt_trailing_space, _prompt_no_name, _prompt_not_controlled],
)
def _check_copy_prompt(candidate) -> None:
    prompts = []
    for name, facts in _VENUES:
        prompt = candidate(name, dict(facts))
        if not isinstance(prompt, str):
            fail(f"copy_prompt({name!r}, ...) should return a str, got {type(prompt).__name__}")
        if prompt.count(name) != 1:
            fail(
                f"copy_prompt({name!r}, ...) mentions the name {prompt.count(name)} times; "
                f"mention it exactly once: {prompt!r}"
            )
        if prompt.rstrip().endswith(name):
            fail(
                f"copy_prompt({name!r}, ...) ends with the name, so there is nothing left to "
                f"copy: end where the name comes next: {prompt!r}"
            )
        if prompt != prompt.rstrip():
            fail(
                f"copy_prompt({name!r}, ...) ends with whitespace; the space belongs to the "
                f"name's first token (' {name.split()[0]}'): {prompt!r}"
            )
        if len(prompt) > 300:
            fail(
                f"copy_prompt({name!r}, ...) has {len(prompt)} characters; keep it under 300 "
                "so that it fits the small bases' context"
            )
        prompts.append((name, facts, prompt))
    for name, facts, prompt in prompts:
        other = candidate("Nightingale Hearth", dict(facts))
        if prompt.replace(name, "\0") != other.replace("Nightingale Hearth", "\0"):
            fail(
                f"copy_prompt changes more than the name when only the name changes "
                f"({name!r} vs 'Nightingale Hearth'): a probe must vary one thing at a time"
            )


def _spread_values(n: int, g: torch.Generator) -> torch.Tensor:
    """Float32 values over eight orders of magnitude, positive and negative: the sums of such
    values change in their last bits with the order of the additions."""
    return (torch.randn(n, generator=g) * 10 ** (torch.rand(n, generator=g) * 8 - 4)).float()


@register(
    "ch05.fixed_order_sum",
    reference=fixed_order_sum,
    wrong=[_sum_in_arrival_order, _sum_index_add_arrival, _sum_half, _sum_ignores_bins],
)
def _check_fixed_order_sum(candidate) -> None:
    g = torch.Generator().manual_seed(11)
    for n, bins in ((2000, 7), (300, 1), (40, 16)):  # the last has empty bins
        values = _spread_values(n, g)
        index = torch.randint(0, bins - 1 if bins > 8 else bins, (n,), generator=g)
        exact = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, values.double())
        scale = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, values.double().abs())
        first = None
        for k in range(4):
            arrival = torch.randperm(n, generator=g)
            what = f"fixed_order_sum ({n} values into {bins} bins, arrival order {k + 1})"
            got = candidate(values.clone(), index.clone(), bins, arrival)
            if not isinstance(got, torch.Tensor) or got.shape != (bins,):
                fail(f"{what} should return a tensor of shape ({bins},), got {got!r:.80}")
            if got.dtype != torch.float32:
                fail(f"{what} returned {got.dtype}; return the sums in float32, as the model's")
            err = (got.double() - exact).abs()
            bad = (~torch.isfinite(got)) | (err > 1e-4 * scale + 1e-30)
            if bad.any():
                j = int(bad.nonzero()[0])
                fail(
                    f"{what}: bin {j} sums to {float(got[j]):.9g}, but its values add up to "
                    f"{float(exact[j]):.9g} (float64); each value goes to the bin its index names"
                )
            if first is None:
                first = got.clone()
            elif not torch.equal(got, first):
                j = int((got != first).nonzero()[0])
                fail(
                    f"{what}: bin {j} is {float(got[j]):.9g} here but {float(first[j]):.9g} for "
                    "the first arrival order; the bits must not depend on the arrival order "
                    "(add each bin's values in an order fixed by the input)"
                )
