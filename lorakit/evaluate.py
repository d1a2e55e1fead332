"""Decoding and metrics for the E2E-style task (LoRA paper §5.4, Appendix D.3).

Decoding uses the paper's beam search: beam 10, ``no_repeat_ngram_size=4``,
``length_penalty=0.9``, through HF ``model.generate`` on left-padded batches of prompts.

Metrics come from well-kept libraries, never from code of our own:

* BLEU: ``sacrebleu`` corpus BLEU with several references per hypothesis (E2E's main metric);
* ROUGE-L: Google's ``rouge-score`` F-measure, the best over the references of each hypothesis,
  averaged over the corpus. (The official E2E script uses the COCO-caption ROUGE-L, which pools the
  references differently, so numbers are close to but not identical with the paper's.)
* NIST: NLTK's ``corpus_nist`` (pure Python, no downloads; NLTK comes with ``rouge-score``).
* slot error rate (SER): :func:`slot_error_rate`, the E2E challenge's measure of whether a text
  says what its MR says: (missing + added + wrong slot values) / slots in the MRs, in percent.
  BLEU rewards wording close to the references and barely notices a dropped slot; SER checks
  the content and ignores the wording, so the two are reported together. The slot values are
  found by the regular expressions of :mod:`lorakit.data.lexicon` (written for E2E's values, so
  it works on the real E2E data too); :func:`slot_errors` says which slots one text gets wrong.
* METEOR and CIDEr are not offered: METEOR needs the WordNet corpus (a download; the official
  version needs Java), and CIDEr's usual implementation (``pycocoevalcap``) needs Java for its
  tokenizer. The paper reports them; we say so where we compare.

All scores are on a 0-100 scale except NIST (unbounded, about 8-9 on real E2E); SER is in
percent, lower is better.
``rouge-score`` and ``nltk`` are imported inside the functions that use them, so decoding and BLEU
work on machines without them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lorakit.data.collate import pad_id_of, prompt_batches
from lorakit.data.lexicon import slot_error_rate, slot_errors
from lorakit.presets import pick_device

PAPER_DECODING = {"num_beams": 10, "no_repeat_ngram_size": 4, "length_penalty": 0.9}

__all__ = [
    "PAPER_DECODING",
    "bleu_from_stats",
    "bleu_stats",
    "corpus_bleu",
    "corpus_nist",
    "generate_texts",
    "rouge_l",
    "rouge_l_items",
    "score_all",
    "slot_error_rate",
    "slot_errors",
]


@torch.no_grad()
def generate_texts(
    model: nn.Module,
    tokenizer,
    mrs: Sequence[str],
    batch_size: int = 16,
    max_new_tokens: int = 64,
    num_beams: int = 10,
    no_repeat_ngram_size: int = 4,
    length_penalty: float = 0.9,
    device: str | torch.device | None = None,
) -> list[str]:
    """Decode one text per MR with beam search (defaults: the paper's settings).

    Parameters
    ----------
    model : an HF causal LM with ``generate`` (LoRA layers merged or not).
    tokenizer : the model's tokenizer (needs an eos token).
    mrs : meaning representations; the prompt is ``"<mr> ||"``.
    batch_size : prompts per ``generate`` call (left-padded to the same length T).
    max_new_tokens : the longest text generated; decoding also stops at eos.
    device : where to decode (default: CUDA, then MPS, then CPU). The model is moved there and
        stays there; its train/eval mode is restored.

    Returns
    -------
    list[str] : the generated texts, stripped, in the order of ``mrs``.
    """
    if not hasattr(model, "generate"):
        raise TypeError(
            f"{type(model).__name__} has no generate(); pass an HF causal LM "
            "(e.g. GPT2LMHeadModel)."
        )
    device = pick_device(None if device is None else str(device))
    was_training = model.training
    model.eval().to(device)
    eos, pad = tokenizer.eos_token_id, pad_id_of(tokenizer)
    bf16 = device.type == "cuda"
    texts: list[str] = []
    try:
        for batch in prompt_batches(list(mrs), tokenizer, batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    num_beams=num_beams,
                    no_repeat_ngram_size=no_repeat_ngram_size,
                    length_penalty=length_penalty,
                    do_sample=False,
                    early_stopping=True,
                    eos_token_id=eos,
                    pad_token_id=pad,
                )
            new = out[:, batch["input_ids"].shape[1] :]
            texts += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        model.train(was_training)
    return texts


def _check(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> None:
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError(
            "Pass a list of hypotheses and a list of reference lists, "
            "e.g. corpus_bleu(['a cat'], [['a cat', 'the cat']])."
        )
    if len(hyps) != len(refs):
        raise ValueError(
            f"{len(hyps)} hypotheses but {len(refs)} reference lists; "
            "give one list of references per hypothesis."
        )
    if not hyps:
        raise ValueError("No hypotheses to score.")
    for i, r in enumerate(refs):
        if isinstance(r, str) or not r:
            raise ValueError(
                f"References of hypothesis {i} must be a non-empty list of strings, got {r!r}."
            )


def _ref_streams(refs: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: stream j holds every item's j-th reference (``None`` where it has
    none).
    """
    width = max(len(r) for r in refs)
    return [[r[j] if j < len(r) else None for r in refs] for j in range(width)]


def corpus_bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Multi-reference corpus BLEU (sacrebleu, default 13a tokenisation), 0-100.

    ``refs[i]`` is the list of references of ``hyps[i]``; the lists may differ in length.
    """
    import sacrebleu

    _check(hyps, refs)
    return float(sacrebleu.corpus_bleu(list(hyps), _ref_streams(refs)).score)


def bleu_stats(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> np.ndarray:
    """Each item's BLEU sufficient statistics, from sacrebleu: an int64 array of shape (N, 10).

    Columns: hypothesis length, closest reference length, matched 1- to 4-grams, hypothesis 1- to
    4-grams. Corpus BLEU is a function of their column sums (:func:`bleu_from_stats`), so the
    BLEU of any multiset of items (a bootstrap resample) is ``bleu_from_stats(weights @ stats)``
    and equals :func:`corpus_bleu` on those items. (sacrebleu's own significance tests work from
    the same per-segment statistics.)
    """
    from sacrebleu.metrics import BLEU

    _check(hyps, refs)
    stats = BLEU()._extract_corpus_statistics(list(hyps), _ref_streams(refs))
    return np.asarray(stats, dtype=np.int64).reshape(len(hyps), -1)


def bleu_from_stats(summed: Sequence[int] | np.ndarray) -> float:
    """Corpus BLEU (0-100) from summed :func:`bleu_stats` (shape (10,)), as sacrebleu computes
    it.
    """
    from sacrebleu.metrics import BLEU

    summed = [int(v) for v in np.asarray(summed).reshape(-1)]
    return float(BLEU()._compute_score_from_stats(summed).score)


def _rouge_f(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[float]:
    from rouge_score import rouge_scorer

    _check(hyps, refs)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return [max(scorer.score(r, h)["rougeL"].fmeasure for r in rs) for h, rs in zip(hyps, refs)]


def rouge_l_items(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[float]:
    """Each item's ROUGE-L F-measure (rouge-score) with its best reference, x 100 (N values).

    :func:`rouge_l` is their mean (up to the last bits of the float sum).
    """
    return [100.0 * f for f in _rouge_f(hyps, refs)]


def rouge_l(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """ROUGE-L F-measure (rouge-score), best over each hypothesis' references, mean x 100."""
    best = _rouge_f(hyps, refs)
    return 100.0 * sum(best) / len(best)


def corpus_nist(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = 5) -> float:
    """Multi-reference NIST (NLTK ``corpus_nist``, n-grams up to ``n`` as E2E uses).

    NLTK divides by the number of hypothesis n-grams of each order, so ``n`` is lowered to the
    longest hypothesis' length (and the score is 0 when every hypothesis is empty).
    """
    from nltk.translate.nist_score import corpus_nist as _nist

    _check(hyps, refs)
    hyp_tokens = [h.split() for h in hyps]
    n = min(n, max(len(h) for h in hyp_tokens))
    if n == 0:
        return 0.0
    return float(_nist([[r.split() for r in rs] for rs in refs], hyp_tokens, n=n))


def score_all(
    hyps: Sequence[str], refs: Sequence[Sequence[str]], mrs: Sequence[str] | None = None
) -> dict[str, float | None]:
    """BLEU, ROUGE-L and NIST together, and the slot error rate ``"ser"`` when ``mrs`` is given.

    Parameters
    ----------
    hyps : one text per item (N).
    refs : the references of each item (N lists).
    mrs : the meaning representation of each item (N), for the slot error rate.

    A metric whose library is missing is ``None``.
    """
    out: dict[str, float | None] = {"bleu": corpus_bleu(hyps, refs)}
    for key, fn in (("rouge_l", rouge_l), ("nist", corpus_nist)):
        try:
            out[key] = fn(hyps, refs)
        except ImportError:
            out[key] = None
    if mrs is not None:
        if len(mrs) != len(hyps):
            raise ValueError(
                f"{len(hyps)} hypotheses but {len(mrs)} MRs; give one MR per "
                "hypothesis (or mrs=None to skip the slot error rate)."
            )
        out["ser"] = slot_error_rate(mrs, hyps)
    return out
