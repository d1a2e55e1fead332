"""Statistics behind the experiments' verdicts: seed spread, bootstrap intervals, the rule.

Three questions every comparison of two configurations (methods, targets, ranks) asks:

* **How much do seeds move a score?** :func:`seed_summary` over one configuration's runs (one
  value per seed): mean, sample standard deviation (``ddof=1``), min and max.
* **How much does the test set move it?** :func:`bootstrap_ci` resamples the test MRs with
  replacement (each MR with all its references), recomputes the corpus-level metric on each
  resample and returns the percentile 95% interval. Seeded (``numpy.random.default_rng(seed)``),
  1000 resamples by default. :func:`bootstrap_cis` does several metrics on one shared set of
  resamples.
* **Is the difference real?** :func:`verdict` applies a stated rule (:data:`RULES`); with fewer
  than 2 seeds on either side the answer is ``"undetermined"``.

The default rule ``"max-noise"``: the noise is the largest of the two seed standard deviations
and the two mean bootstrap 95% half-widths; a difference of seed means whose size is at most the
noise is ``"within noise"``, a larger one names the better side (``"a better"`` or
``"b better"``; for a metric where lower is better, pass ``higher_is_better=False``). What
``"within noise"`` means for a claim is the caller's to say: for "A matches B" it supports the
claim, for "A beats B" it leaves it undetermined.

Metrics by name (``metric=``): ``"bleu"`` (sacrebleu corpus BLEU, recomputed from per-MR
sufficient statistics, equal to :func:`lorakit.evaluate.corpus_bleu` on each resample),
``"rouge_l"`` (mean of per-MR ROUGE-L), ``"ser"`` (slot error rate: errors over slots of the
resampled MRs; needs ``mrs``) and ``"nist"`` (NLTK's corpus NIST recomputed on every resample:
exact but about 1.7 s per resample of 552 MRs, so pass a small ``n`` or leave it out). Any
callable ``metric(hyps, refs) -> float`` is recomputed on each resample.

Example
-------
>>> ci = bootstrap_ci(hyps, refs, "bleu")                     # doctest: +SKIP
>>> lora, full = seed_summary([67.9, 68.3, 67.5]), seed_summary([66.7, 66.1])  # doctest: +SKIP
>>> verdict(lora.values, full.values, ci_a, ci_b).outcome       # doctest: +SKIP
'a better'
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

FAST_METRICS = ("bleu", "rouge_l", "ser")
RULES = {
    "max-noise": "|mean(a) - mean(b)| <= max(sd_a, sd_b, hw_a, hw_b) is within noise, where sd is "
    "the sample standard deviation over seeds and hw the mean half-width of the "
    "runs' bootstrap 95% intervals over test MRs; fewer than 2 seeds on a side is "
    "undetermined",
    "seed-spread": "|mean(a) - mean(b)| <= max(sd_a, sd_b) is within noise (sample standard "
    "deviation over seeds); fewer than 2 seeds on a side is undetermined",
}


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval: ``estimate`` on the whole test set, ``[lo, hi]`` at ``level``."""

    estimate: float
    lo: float
    hi: float
    n: int
    seed: int
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.estimate:.1f} [{self.lo:.1f}, {self.hi:.1f}]"


@dataclass(frozen=True)
class SeedSummary:
    """One configuration over seeds: ``n`` values, their mean and sample standard deviation."""

    n: int
    mean: float
    sd: float | None  # None with one value
    min: float
    max: float
    values: tuple[float, ...]

    def to_dict(self) -> dict:
        return {**asdict(self), "values": list(self.values)}

    def __str__(self) -> str:
        spread = f" ± {self.sd:.1f}" if self.sd is not None else ""
        return f"{self.mean:.1f}{spread} ({self.n} seed{'s' if self.n != 1 else ''})"


@dataclass(frozen=True)
class Verdict:
    """The outcome of comparing a with b under ``rule`` (see :data:`RULES`).

    ``outcome``: ``"a better"``, ``"b better"``, ``"within noise"`` or ``"undetermined"``;
    ``diff`` = mean(a) - mean(b) and ``noise`` the threshold (``None`` when undetermined).
    """

    outcome: str
    diff: float | None
    noise: float | None
    n_a: int
    n_b: int
    rule: str
    why: str

    def to_dict(self) -> dict:
        return {**asdict(self), "rule_text": RULES[self.rule]}


def seed_summary(values: Sequence[float]) -> SeedSummary:
    """Mean, sample standard deviation (``ddof=1``; ``None`` for one value), min and max."""
    vals = tuple(float(v) for v in values)
    if not vals:
        raise ValueError("seed_summary needs at least one value (one per seed).")
    sd = statistics.stdev(vals) if len(vals) > 1 else None
    return SeedSummary(len(vals), statistics.fmean(vals), sd, min(vals), max(vals), vals)


def resample_counts(n_items: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """How often each item is drawn in each of ``n`` resamples with replacement: (n, n_items).

    Row ``b`` sums to ``n_items``. The same ``(n_items, n, seed)`` always gives the same counts.
    """
    if n_items < 1 or n < 1:
        raise ValueError(f"Need at least one item and one resample, got {n_items} and {n}.")
    idx = np.random.default_rng(seed).integers(0, n_items, size=(n, n_items))
    counts = np.zeros((n, n_items), dtype=np.int64)
    np.add.at(counts, (np.arange(n)[:, None], idx), 1)
    return counts


def _per_resample(metric, hyps, refs, mrs, counts) -> tuple[float, np.ndarray]:
    """The metric on the whole set and on each resample (rows of ``counts``)."""
    from lorakit import evaluate

    if metric == "bleu":
        stats = evaluate.bleu_stats(hyps, refs)
        full = evaluate.bleu_from_stats(stats.sum(0))
        return full, np.array([evaluate.bleu_from_stats(row) for row in counts @ stats])
    if metric == "rouge_l":
        items = np.asarray(evaluate.rouge_l_items(hyps, refs))
        return float(items.mean()), counts @ items / len(items)
    if metric == "ser":
        if mrs is None:
            raise ValueError("The slot error rate needs the MRs: bootstrap_ci(..., mrs=[...]).")
        from lorakit.data.lexicon import parse_mr, slot_errors

        errors = np.array([sum(map(len, slot_errors(m, h).values())) for m, h in zip(mrs, hyps)])
        slots = np.array([len(parse_mr(m)) for m in mrs])
        return 100.0 * errors.sum() / slots.sum(), 100.0 * (counts @ errors) / (counts @ slots)
    fn: Callable = evaluate.corpus_nist if metric == "nist" else metric
    if not callable(fn):
        raise ValueError(
            f"Unknown metric {metric!r}; use one of bleu, rouge_l, ser, nist or a "
            "callable metric(hyps, refs) -> float."
        )
    values = []
    for row in counts:
        idx = np.repeat(np.arange(len(hyps)), row)
        values.append(fn([hyps[i] for i in idx], [refs[i] for i in idx]))
    return float(fn(list(hyps), [list(r) for r in refs])), np.asarray(values, dtype=float)


def bootstrap_ci(
    hyps: Sequence[str],
    refs_per_mr: Sequence[Sequence[str]],
    metric: str | Callable = "bleu",
    n: int = 1000,
    seed: int = 0,
    *,
    mrs: Sequence[str] | None = None,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of a corpus metric over test MRs.

    Parameters
    ----------
    hyps : one generated text per test MR (N).
    refs_per_mr : the references of each MR (N lists): an MR is resampled with all of them.
    metric : ``"bleu"``, ``"rouge_l"``, ``"ser"``, ``"nist"`` or ``metric(hyps, refs) -> float``.
    n : number of resamples (each draws N MRs with replacement).
    seed : seed of the resampling (``numpy.random.default_rng``).
    mrs : the N meaning representations (needed for ``"ser"``).
    level : the interval's coverage (0.95: the 2.5th and 97.5th percentiles).

    Returns
    -------
    Interval : the metric on the whole set and the interval's ends.
    """
    if metric == "ser" and mrs is None:
        raise ValueError("The slot error rate needs the MRs: bootstrap_ci(..., mrs=[...]).")
    (interval,) = bootstrap_cis(hyps, refs_per_mr, [metric], n, seed, mrs=mrs, level=level).values()
    return interval


def bootstrap_cis(
    hyps: Sequence[str],
    refs_per_mr: Sequence[Sequence[str]],
    metrics: Sequence[str | Callable] = FAST_METRICS,
    n: int = 1000,
    seed: int = 0,
    *,
    mrs: Sequence[str] | None = None,
    level: float = 0.95,
) -> dict[str, Interval]:
    """:func:`bootstrap_ci` for several metrics on the same resamples; keyed by metric name
    (a callable by its ``__name__``). ``"ser"`` is skipped when ``mrs`` is None."""
    hyps, refs = list(hyps), [list(r) for r in refs_per_mr]
    if len(hyps) != len(refs) or (mrs is not None and len(mrs) != len(hyps)):
        raise ValueError(
            f"Give one reference list (and MR) per hypothesis: {len(hyps)} "
            f"hypotheses, {len(refs)} reference lists"
            + ("" if mrs is None else f", {len(mrs)} MRs")
            + "."
        )
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    counts = resample_counts(len(hyps), n, seed)
    tail = 100 * (1 - level) / 2
    out = {}
    for metric in metrics:
        if metric == "ser" and mrs is None:
            continue
        full, values = _per_resample(metric, hyps, refs, mrs, counts)
        lo, hi = np.percentile(values, [tail, 100 - tail])
        name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
        out[name] = Interval(float(full), float(lo), float(hi), n, seed, level)
    return out


def _half_widths(cis) -> list[float]:
    out = []
    for ci in cis or ():
        if isinstance(ci, Interval):
            out.append(ci.half_width)
        elif isinstance(ci, dict):
            out.append((ci["hi"] - ci["lo"]) / 2)
        else:
            lo, hi = ci
            out.append((hi - lo) / 2)
    return out


def verdict(
    a_values: Sequence[float],
    b_values: Sequence[float],
    ci_a=None,
    ci_b=None,
    rule: str = "max-noise",
    higher_is_better: bool = True,
) -> Verdict:
    """Compare configuration a with b (one value per seed each) under a stated rule.

    Parameters
    ----------
    a_values, b_values : the metric of each seed's run.
    ci_a, ci_b : the runs' bootstrap intervals (:class:`Interval`, ``{"lo", "hi"}`` dicts or
        ``(lo, hi)`` pairs), or None; rule ``"max-noise"`` uses their mean half-width.
    rule : a key of :data:`RULES`.
    higher_is_better : False for metrics such as the slot error rate.

    Returns
    -------
    Verdict : ``"undetermined"`` when a side has fewer than 2 seeds; else ``"within noise"``
        when ``|diff| <= noise``, or the better side.
    """
    if rule not in RULES:
        raise ValueError(f"Unknown rule {rule!r}; use one of {', '.join(RULES)}.")
    a, b = (
        seed_summary(a_values) if a_values else None,
        seed_summary(b_values) if b_values else None,
    )
    n_a, n_b = (a.n if a else 0), (b.n if b else 0)
    if n_a < 2 or n_b < 2:
        return Verdict(
            "undetermined",
            None if not (a and b) else a.mean - b.mean,
            None,
            n_a,
            n_b,
            rule,
            f"fewer than 2 seeds (a: {n_a}, b: {n_b}): no spread to judge by",
        )
    parts = {"sd_a": a.sd, "sd_b": b.sd}
    if rule == "max-noise":
        for side, cis in (("a", ci_a), ("b", ci_b)):
            hws = _half_widths(cis)
            if hws:
                parts[f"hw_{side}"] = statistics.fmean(hws)
    noise = max(v for v in parts.values() if v is not None and not math.isnan(v))
    diff = a.mean - b.mean
    said = ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
    if abs(diff) <= noise:
        return Verdict(
            "within noise",
            diff,
            noise,
            n_a,
            n_b,
            rule,
            f"|{diff:+.2f}| <= noise {noise:.2f} ({said})",
        )
    better = "a" if (diff > 0) == higher_is_better else "b"
    return Verdict(
        f"{better} better",
        diff,
        noise,
        n_a,
        n_b,
        rule,
        f"|{diff:+.2f}| > noise {noise:.2f} ({said})",
    )
