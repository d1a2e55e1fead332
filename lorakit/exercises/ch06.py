"""Chapter 6 exercises: scoring, labels, and reading a grid of runs honestly.

The references are the notebook's solutions, the same code (cells carry ``# sync: ...``). Each
checker compares the learner's function with lorakit's own machinery on small seeded inputs:
:func:`lorakit.data.lexicon.slot_error_rate`, :func:`lorakit.data.collate.collate`,
:func:`lorakit.evaluate.corpus_bleu` on resampled test MRs, and the verdict rule of
:func:`lorakit.experiments._stats.verdict`.
"""

from __future__ import annotations

import statistics

import numpy as np

from lorakit.data import load_e2e, parse_mr, slot_errors
from lorakit.data.template import template_texts
from lorakit.evaluate import corpus_bleu
from lorakit.exercises.compare import as_number, assert_number
from lorakit.exercises.core import assert_close, assert_equal, fail, register

# ----------------------------------------------------------------------------- references


def slot_error_rate(mrs: list[str], texts: list[str]) -> float:
    """SER in percent: every slot error (missing, added, wrong) over every slot of the MRs."""
    errors = slots = 0
    for mr, text in zip(mrs, texts):
        slots += len(parse_mr(mr))
        errors += sum(len(found) for found in slot_errors(mr, text).values())
    return 100.0 * errors / slots


def make_labels(
    input_ids: list[int], n_prompt: int, width: int, pad_id: int
) -> tuple[list[int], list[int]]:
    """One example padded on the right to ``width``: its ids and its labels, -100 on the MR
    (the first ``n_prompt`` ids) and on the padding, the ids themselves elsewhere."""
    pad = width - len(input_ids)
    ids = list(input_ids) + [pad_id] * pad
    labels = [-100] * n_prompt + list(input_ids[n_prompt:]) + [-100] * pad
    return ids, labels


def bleu_interval(
    hyps: list[str], refs: list[list[str]], resamples: np.ndarray
) -> tuple[float, float]:
    """The 95% bootstrap interval of corpus BLEU: each row of ``resamples`` (n, N) lists the
    test MRs of one resample; each MR comes with its text and all its references."""
    scores = [corpus_bleu([hyps[i] for i in row], [refs[i] for i in row]) for row in resamples]
    lo, hi = np.percentile(scores, [2.5, 97.5])
    return float(lo), float(hi)


def noise_verdict(a: list[float], b: list[float], hw_a: float, hw_b: float) -> str:
    """Compare two configurations by their seeds' values: "undetermined" with fewer than 2 seeds
    a side; "within noise" when |mean(a) - mean(b)| <= the largest of the two sample standard
    deviations and the two bootstrap half-widths; else "a better" or "b better"."""
    if len(a) < 2 or len(b) < 2:
        return "undetermined"
    noise = max(statistics.stdev(a), statistics.stdev(b), hw_a, hw_b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if abs(diff) <= noise:
        return "within noise"
    return "a better" if diff > 0 else "b better"


# ----------------------------------------------------------------------------- typical mistakes


def _ser_mean_of_rates(mrs, texts):
    return 100.0 * statistics.fmean(
        sum(map(len, slot_errors(m, t).values())) / len(parse_mr(m)) for m, t in zip(mrs, texts)
    )


def _ser_missing_only(mrs, texts):
    return (
        100.0
        * sum(len(slot_errors(m, t)["missing"]) for m, t in zip(mrs, texts))
        / sum(len(parse_mr(m)) for m in mrs)
    )


def _ser_per_mr(mrs, texts):
    return (
        100.0
        * sum(sum(map(len, slot_errors(m, t).values())) for m, t in zip(mrs, texts))
        / len(mrs)
    )


def _labels_keep_prompt(input_ids, n_prompt, width, pad_id):
    pad = width - len(input_ids)
    return list(input_ids) + [pad_id] * pad, list(input_ids) + [-100] * pad


def _labels_pad_id(input_ids, n_prompt, width, pad_id):
    pad = width - len(input_ids)
    return (
        list(input_ids) + [pad_id] * pad,
        [-100] * n_prompt + list(input_ids[n_prompt:]) + [pad_id] * pad,
    )


def _labels_shifted(input_ids, n_prompt, width, pad_id):
    pad = width - len(input_ids)
    return (
        list(input_ids) + [pad_id] * pad,
        [-100] * (n_prompt - 1) + list(input_ids[n_prompt:]) + [-100] * (pad + 1),
    )


def _interval_hyps_only(hyps, refs, resamples):  # breaks the pairing of texts and references
    scores = [corpus_bleu([hyps[i] for i in row], refs) for row in resamples]
    lo, hi = np.percentile(scores, [2.5, 97.5])
    return float(lo), float(hi)


def _interval_90(hyps, refs, resamples):
    scores = [corpus_bleu([hyps[i] for i in row], [refs[i] for i in row]) for row in resamples]
    lo, hi = np.percentile(scores, [5, 95])
    return float(lo), float(hi)


def _interval_sd(hyps, refs, resamples):
    scores = [corpus_bleu([hyps[i] for i in row], [refs[i] for i in row]) for row in resamples]
    return float(np.mean(scores) - np.std(scores)), float(np.mean(scores) + np.std(scores))


def _verdict_one_seed(a, b, hw_a, hw_b):
    sd = [statistics.stdev(x) if len(x) > 1 else 0.0 for x in (a, b)]
    diff = statistics.fmean(a) - statistics.fmean(b)
    if abs(diff) <= max(*sd, hw_a, hw_b):
        return "within noise"
    return "a better" if diff > 0 else "b better"


def _verdict_seeds_only(a, b, hw_a, hw_b):
    return noise_verdict(a, b, 0.0, 0.0)


def _verdict_pstdev(a, b, hw_a, hw_b):
    if len(a) < 2 or len(b) < 2:
        return "undetermined"
    diff = statistics.fmean(a) - statistics.fmean(b)
    if abs(diff) <= max(statistics.pstdev(a), statistics.pstdev(b), hw_a, hw_b):
        return "within noise"
    return "a better" if diff > 0 else "b better"


# ----------------------------------------------------------------------------- checkers


def _test_texts(n: int = 12) -> tuple[list[str], list[str], list[list[str]]]:
    """n test MRs of the shipped set, template texts with a few errors, and the references."""
    test = load_e2e("test", "synthetic")[:n]
    mrs = [r.mr for r in test]
    texts = template_texts(mrs)
    texts[1] = texts[1].split(".")[0] + "."  # drops the slots after the first sentence
    texts[4] = texts[4] + " It is cheap and family-friendly."  # may add slots
    texts[7] = "A place to eat."  # drops nearly everything
    return mrs, texts, [list(r.refs) for r in test]


@register(
    "ch06.slot_error_rate",
    reference=slot_error_rate,
    wrong=[_ser_mean_of_rates, _ser_missing_only, _ser_per_mr],
)
def _check_slot_error_rate(candidate) -> None:
    from lorakit.data.lexicon import slot_error_rate as lorakit_ser

    mrs, texts, _ = _test_texts()
    for lo, hi in ((0, 12), (1, 2), (4, 9)):
        what = f"slot_error_rate(mrs[{lo}:{hi}], texts[{lo}:{hi}])"
        got = candidate(mrs[lo:hi], texts[lo:hi])
        assert_number(what, got, lorakit_ser(mrs[lo:hi], texts[lo:hi]), atol=1e-9, rtol=0)


@register(
    "ch06.make_labels",
    reference=make_labels,
    wrong=[_labels_keep_prompt, _labels_pad_id, _labels_shifted],
)
def _check_make_labels(candidate) -> None:
    from lorakit.data.collate import Example, collate

    rng = np.random.default_rng(0)
    examples = [
        Example(tuple(int(t) for t in rng.integers(1, 50, size=n)), p)
        for n, p in ((9, 4), (5, 2), (12, 7))
    ]
    batch = collate(examples, pad_id=0)
    width = batch["input_ids"].shape[1]
    for i, e in enumerate(examples):
        what = (
            f"make_labels(ids of length {len(e.input_ids)}, n_prompt={e.n_prompt}, "
            f"width={width}, pad_id=0)"
        )
        got = candidate(list(e.input_ids), e.n_prompt, width, 0)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return a tuple (ids, labels), got {type(got).__name__}")
        ids, labels = (list(map(int, x)) for x in got)
        assert_equal(f"{what}: ids", ids, batch["input_ids"][i].tolist())
        assert_equal(f"{what}: labels", labels, batch["labels"][i].tolist())


@register(
    "ch06.bleu_interval",
    reference=bleu_interval,
    wrong=[_interval_hyps_only, _interval_90, _interval_sd],
)
def _check_bleu_interval(candidate) -> None:
    mrs, texts, refs = _test_texts()
    resamples = np.random.default_rng(1).integers(0, len(texts), size=(40, len(texts)))
    got = candidate(list(texts), [list(r) for r in refs], resamples.copy())
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"bleu_interval should return (lo, hi), got {type(got).__name__}")
    lo, hi = (as_number("bleu_interval's " + w, v) for w, v in zip(("lo", "hi"), got))
    want = bleu_interval(texts, refs, resamples)
    assert_close("bleu_interval (lo, hi)", np.array([lo, hi]), np.array(want), atol=1e-6, rtol=0)


@register(
    "ch06.noise_verdict",
    reference=noise_verdict,
    wrong=[_verdict_one_seed, _verdict_seeds_only, _verdict_pstdev],
)
def _check_noise_verdict(candidate) -> None:
    from lorakit.experiments._stats import verdict

    cases = [
        ([68.0, 68.2, 67.8], [66.0, 66.2, 65.8], 0.5, 0.5),
        ([66.0, 66.2, 65.8], [68.0, 68.2, 67.8], 0.5, 0.5),
        ([68.0, 68.2, 67.8], [66.0, 66.2, 65.8], 2.5, 0.5),  # a wide interval: noise
        ([70.0], [60.0, 61.0], 0.1, 0.1),  # one seed
        ([60.0, 62.0], [59.0, 59.1], 0.2, 0.2),  # sd 1.41 vs |diff| 1.95
        ([60.0, 61.0], [59.9, 60.0], 0.2, 0.2),  # pstdev 0.5, stdev 0.71
        ([50.0, 50.0, 50.0], [50.0, 50.0], 0.0, 0.0),
    ]
    for a, b, hw_a, hw_b in cases:
        lib = verdict(a, b, [(0.0, 2 * hw_a)] * len(a), [(0.0, 2 * hw_b)] * len(b)).outcome
        assert_equal(f"noise_verdict({a}, {b}, {hw_a}, {hw_b})", candidate(a, b, hw_a, hw_b), lib)
