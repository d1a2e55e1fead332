"""lorakit.evaluate: metric wrappers on hand-computed cases, and batched beam-search decoding."""

from __future__ import annotations

import pytest
import torch

from lorakit.evaluate import corpus_bleu, corpus_nist, generate_texts, rouge_l, score_all

HYP = "the cat sat on the mat"
REF = "the cat sat on a mat"


def test_identical_hypothesis_scores_100():
    assert corpus_bleu([HYP], [[HYP]]) == pytest.approx(100.0)
    assert rouge_l([HYP], [[HYP]]) == pytest.approx(100.0)


def test_bleu_by_hand():
    # n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty:
    # BLEU = (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = (1/12) ** 0.25
    assert corpus_bleu([HYP], [[REF]]) == pytest.approx(100 * (1 / 12) ** 0.25, abs=1e-6)
    # a second reference that contains the hypothesis makes every n-gram match
    assert corpus_bleu([HYP], [[REF, HYP]]) == pytest.approx(100.0)
    # brevity penalty by hand: every n-gram of a 4-word hypothesis matches an 8-word
    # reference, so BLEU = exp(1 - 8/4)
    short = corpus_bleu(["the cat sat on"], [["the cat sat on the mat by noon"]])
    assert short == pytest.approx(100 * 2.718281828459045 ** (1 - 2), abs=1e-4)


def test_bleu_accepts_different_numbers_of_references():
    refs = [[REF], [REF, "a dog ran", "the dog ran away"]]
    hyps = [HYP, "the dog ran"]
    score = corpus_bleu(hyps, refs)
    assert 0 < score < 100
    # references are per hypothesis: swapping the pairs changes the score
    assert corpus_bleu(hyps[::-1], refs) < score


def test_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat sat on a mat") = 5 words: P = R = F = 5/6
    assert rouge_l([HYP], [[REF]]) == pytest.approx(100 * 5 / 6)
    # best over references, then the mean over hypotheses
    assert rouge_l([HYP, HYP], [["a dog", REF], [HYP]]) == pytest.approx(100 * (5 / 6 + 1) / 2)


def test_nist_prefers_better_hypotheses():
    refs = [[REF, "a cat sat on the mat"]]
    assert corpus_nist([HYP], refs) > corpus_nist(["a dog ran off to the park"], refs) > 0.0
    # short and empty hypotheses (an untrained model) give a number, not a crash
    assert corpus_nist(["cat", ""], [[REF], [REF]]) >= 0.0
    assert corpus_nist([""], [[REF]]) == 0.0
    scores = score_all([HYP], [[HYP]])
    assert set(scores) == {"bleu", "rouge_l", "nist"} and scores["rouge_l"] == pytest.approx(100)


@pytest.mark.parametrize("fn", [corpus_bleu, rouge_l, corpus_nist])
def test_metric_input_errors(fn):
    with pytest.raises(ValueError, match="reference lists"):
        fn([HYP, HYP], [[REF]])
    with pytest.raises(TypeError, match="list of hypotheses"):
        fn(HYP, [[REF]])
    with pytest.raises(ValueError, match="non-empty list"):
        fn([HYP], [REF])
    with pytest.raises(ValueError, match="No hypotheses"):
        fn([], [])


def test_generate_left_padding_matches_one_by_one(tiny_gpt2, tiny_tokenizer):
    mrs = ["name[A]", "name[The Eagle], eatType[coffee shop], food[Japanese]", "name[B], near[X]"]
    kwargs = dict(num_beams=3, max_new_tokens=6, device="cpu")
    batched = generate_texts(tiny_gpt2, tiny_tokenizer, mrs, batch_size=3, **kwargs)
    single = [
        generate_texts(tiny_gpt2, tiny_tokenizer, [m], batch_size=1, **kwargs)[0] for m in mrs
    ]
    assert len(batched) == 3 and batched == single
    assert all(isinstance(t, str) for t in batched)


def test_generate_needs_a_generative_model(tiny_tokenizer):
    with pytest.raises(TypeError, match="generate"):
        generate_texts(torch.nn.Linear(2, 2), tiny_tokenizer, ["name[A]"])
