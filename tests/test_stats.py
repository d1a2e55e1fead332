"""lorakit.experiments._stats: seed summaries, bootstrap intervals over test MRs, verdicts."""

import numpy as np
import pytest

from lorakit.data import load_e2e
from lorakit.data.template import template_texts
from lorakit.evaluate import bleu_from_stats, bleu_stats, corpus_bleu, rouge_l, slot_error_rate
from lorakit.experiments._stats import (
    RULES,
    Interval,
    bootstrap_ci,
    bootstrap_cis,
    resample_counts,
    seed_summary,
    verdict,
)


@pytest.fixture(scope="module")
def test_set():
    test = load_e2e("test", "synthetic")[:40]
    mrs = [r.mr for r in test]
    hyps = template_texts(mrs)
    hyps[3] = "A place."  # a few bad texts so the metrics vary across MRs
    hyps[7] = hyps[8]
    return hyps, [list(r.refs) for r in test], mrs


def _resampled(counts_row, *lists):
    idx = np.repeat(np.arange(len(counts_row)), counts_row)
    return [[lst[i] for i in idx] for lst in lists]


def test_resample_counts_are_seeded_draws_with_replacement():
    c = resample_counts(7, n=50, seed=3)
    assert c.shape == (50, 7) and (c.sum(1) == 7).all()
    assert (c == resample_counts(7, n=50, seed=3)).all()
    assert not (c == resample_counts(7, n=50, seed=4)).all()
    assert (c != 1).any()  # some MR drawn twice, some not at all
    with pytest.raises(ValueError, match="at least one"):
        resample_counts(0)


def test_bleu_stats_give_sacrebleu_corpus_bleu_of_any_resample(test_set):
    hyps, refs, _ = test_set
    stats = bleu_stats(hyps, refs)
    assert stats.shape == (len(hyps), 10)
    assert bleu_from_stats(stats.sum(0)) == corpus_bleu(hyps, refs)
    for row in resample_counts(len(hyps), n=3, seed=1):
        h, r = _resampled(row, hyps, refs)
        assert bleu_from_stats(row @ stats) == pytest.approx(corpus_bleu(h, r), abs=1e-9)


def test_bootstrap_fast_paths_equal_recomputing_the_metric(test_set):
    hyps, refs, mrs = test_set
    fast = bootstrap_cis(hyps, refs, ["bleu", "rouge_l", "ser"], n=20, seed=5, mrs=mrs)

    def ser(h, r):  # a callable: recomputed on every resample; needs the MRs in the same order
        return slot_error_rate([by_hyp_ref[(x, tuple(y))] for x, y in zip(h, r)], h)

    by_hyp_ref = {(h, tuple(r)): m for h, r, m in zip(hyps, refs, mrs)}
    slow = bootstrap_cis(hyps, refs, [corpus_bleu, rouge_l, ser], n=20, seed=5)
    for fast_name, slow_name in (("bleu", "corpus_bleu"), ("rouge_l", "rouge_l"), ("ser", "ser")):
        f, s = fast[fast_name], slow[slow_name]
        assert f.estimate == pytest.approx(s.estimate, abs=1e-9)
        assert (f.lo, f.hi) == pytest.approx((s.lo, s.hi), abs=1e-9), fast_name


def test_bootstrap_ci_brackets_the_estimate_and_is_seeded(test_set):
    hyps, refs, mrs = test_set
    ci = bootstrap_ci(hyps, refs, "bleu", n=200, seed=0)
    assert isinstance(ci, Interval) and ci.n == 200 and ci.seed == 0
    assert ci.lo < ci.estimate < ci.hi and ci.half_width > 0
    assert ci == bootstrap_ci(hyps, refs, "bleu", n=200, seed=0)
    assert ci != bootstrap_ci(hyps, refs, "bleu", n=200, seed=1)
    assert ci.to_dict()["lo"] == ci.lo
    perfect = bootstrap_ci([r[0] for r in refs], refs, "bleu", n=50)
    assert perfect.lo == perfect.hi == pytest.approx(100.0)


def test_bootstrap_errors_say_what_is_missing(test_set):
    hyps, refs, mrs = test_set
    with pytest.raises(ValueError, match="needs the MRs"):
        bootstrap_ci(hyps, refs, "ser")
    with pytest.raises(ValueError, match="one reference list"):
        bootstrap_ci(hyps[:-1], refs)
    with pytest.raises(ValueError, match="Unknown metric"):
        bootstrap_ci(hyps, refs, "meteor")
    assert "ser" not in bootstrap_cis(hyps, refs, n=5)  # no MRs: SER left out, not an error


def test_seed_summary():
    s = seed_summary([1.0, 2.0, 3.0])
    assert (s.n, s.mean, s.sd, s.min, s.max) == (3, 2.0, 1.0, 1.0, 3.0)
    assert str(s) == "2.0 ± 1.0 (3 seeds)"
    one = seed_summary([5])
    assert one.sd is None and str(one) == "5.0 (1 seed)"
    with pytest.raises(ValueError):
        seed_summary([])


def test_verdict_needs_two_seeds_a_side():
    v = verdict([70.0], [60.0, 61.0])
    assert v.outcome == "undetermined" and v.noise is None and "fewer than 2 seeds" in v.why
    assert verdict([], [60.0, 61.0]).outcome == "undetermined"


def test_verdict_rule_max_noise_uses_spread_and_bootstrap_width():
    a, b = [68.0, 68.2, 67.8], [66.0, 66.2, 65.8]  # sd 0.2 each, diff 2.0
    assert verdict(a, b).outcome == "a better"
    assert verdict(b, a).outcome == "b better"
    wide = [(60.0, 75.0)] * 3  # half-width 7.5 > diff
    v = verdict(a, b, ci_a=wide, ci_b=[{"lo": 65, "hi": 67}] * 3)
    assert v.outcome == "within noise" and v.noise == pytest.approx(7.5)
    assert v.diff == pytest.approx(2.0)
    assert verdict(a, b, ci_a=wide, rule="seed-spread").outcome == "a better"
    assert v.to_dict()["rule_text"] == RULES["max-noise"]
    with pytest.raises(ValueError, match="Unknown rule"):
        verdict(a, b, rule="t-test")


def test_verdict_lower_is_better():
    ser_a, ser_b = [1.0, 1.2], [9.0, 9.5]
    assert verdict(ser_a, ser_b, higher_is_better=False).outcome == "a better"
    assert verdict(ser_a, ser_b).outcome == "b better"
