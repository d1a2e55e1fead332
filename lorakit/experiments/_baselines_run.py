"""One run of chapter 7's grid: apply a method to a copy of the base, train, decode, score.

Split out of :mod:`lorakit.experiments.baselines` (which re-exports what the chapter uses).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lorakit.baselines import apply_method
from lorakit.data import LengthBucketBatches, load_e2e, make_examples, pad_id_of
from lorakit.evaluate import score_all
from lorakit.experiments._baselines_settings import LABELS
from lorakit.experiments._finetune_run import _subset, decode_timed
from lorakit.experiments._stats import bootstrap_cis
from lorakit.presets import seed_everything
from lorakit.train import TrainConfig, train

HISTORY_ROWS = 40  # loss-curve rows kept in a record
#: the settings a record's ``schedule`` repeats
SCHEDULE = ("epochs", "steps", "batch_size", "warmup", "label_smoothing", "weight_decay", "beams")
DECODE_TOKENS = 128  # about a test prompt and its new tokens, without special tokens


def decode_batch(gen_batch: int, method: str, size: int | None) -> int:
    """How many test MRs a run decodes at once: ``gen_batch``, made smaller for the prefix methods.

    Beam search keeps keys and values for every beam of every MR in the batch, so its memory
    grows with MRs × beams × tokens. A prefix method adds ``size`` special tokens to each
    sequence (512 at Figure 2's largest point: five times the tokens of a plain prompt), so its
    batch is cut by ``DECODE_TOKENS / (DECODE_TOKENS + size)`` to keep that product near what a
    plain run holds: 100 MRs -> 20 at 512 special tokens, 66 at 64. Several runs at once on one
    GPU then fit in memory whatever the methods (eight plain runs decoding together held 132 GiB
    of an H200's 140 GiB), and one prefix run fits on a GPU that holds a plain one.
    """
    if method not in ("prefix_embed", "prefix_layer") or not size:
        return gen_batch
    return max(1, gen_batch * DECODE_TOKENS // (DECODE_TOKENS + size))


def method_kwargs(method: str, size: int | None, separator_ids: list[int], seed: int = 0) -> dict:
    """Settings for :func:`lorakit.baselines.apply_method`.

    ``size`` is the rank r (LoRA, adapters) or the number of special tokens ``l_p + l_i``
    (prefixes: a quarter of them, rounded down, are infix tokens, the rest prefix tokens).
    """
    if method == "lora":
        return dict(r=size, alpha=32, targets=["q", "v"], dropout=0.1)
    if method in ("adapter_h", "adapter_l"):
        return dict(r=size)
    if method in ("prefix_embed", "prefix_layer"):
        l_i = size // 4
        return dict(l_p=size - l_i, l_i=l_i, separator_ids=list(separator_ids), seed=seed)
    return {}


class RealTokenNoRepeatNGram:
    """Beam search's "no repeated n-gram" rule on sequences that hold special ids (>= ``vocab``).

    At each step it bans every token that would complete an n-gram of the sequence so far (prompt
    included), as ``generate(no_repeat_ngram_size=n)`` does, but only n-grams of real tokens:
    a prefix method's prompt holds special ids past the vocabulary, which generated text never
    contains, so an n-gram with one can never repeat; some transformers versions index their
    ban mask with such ids unchecked and fail on the GPU.
    """

    def __init__(self, n: int, vocab: int) -> None:
        self.n, self.vocab = n, vocab

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        n, width = self.n, scores.shape[-1]
        if input_ids.shape[1] < n:
            return scores
        windows = input_ids.unfold(1, n, 1)  # (B, W, n): every n-gram of each sequence
        tail = input_ids[:, input_ids.shape[1] - (n - 1) :]  # the n - 1 last tokens
        banned = (windows[..., :-1] == tail[:, None, :]).all(-1) & (windows < self.vocab).all(-1)
        ids = torch.where(banned, windows[..., -1], width)  # column `width`: nothing banned
        mask = torch.zeros(scores.shape[0], width + 1, dtype=torch.bool, device=scores.device)
        mask.scatter_(1, ids, True)
        return scores.masked_fill(mask[:, :width], float("-inf"))


class PromptedGenerator(nn.Module):
    """Lets :func:`lorakit.evaluate.generate_texts` decode with a method's ``prepare_batch``.

    ``generate(input_ids (B, T), attention_mask (B, T))`` inserts the special tokens (B, T + n),
    generates, and returns the prompt as given followed by the new tokens, as HF ``generate``
    does, so the caller's slicing ``out[:, T:]`` still yields only the generated text. A
    ``no_repeat_ngram_size`` is applied by :class:`RealTokenNoRepeatNGram` (same rule, special
    ids left out).
    """

    def __init__(self, model: nn.Module, prepare) -> None:
        super().__init__()
        self.model, self.prepare = model, prepare

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
        batch = self.prepare({"input_ids": input_ids, "attention_mask": attention_mask})
        n = kwargs.pop("no_repeat_ngram_size", 0) or 0
        if n:
            from transformers import LogitsProcessorList

            vocab = self.model.config.vocab_size
            extra = list(kwargs.pop("logits_processor", None) or [])
            kwargs["logits_processor"] = LogitsProcessorList(
                [*extra, RealTokenNoRepeatNGram(n, vocab)]
            )
        out = self.model.generate(**batch, **kwargs)
        return torch.cat([input_ids, out[:, batch["input_ids"].shape[1] :]], dim=1)


def data_label(src) -> str:
    """A :class:`lorakit.data.sources.DataSource` for a progress line, without this machine's
    paths for the shipped set and the real data's cache (a folder the user gave is shown)."""
    return {
        "synthetic": "the shipped synthetic E2E set, data/e2e",
        "real": "the real E2E data, from the lorakit cache",
    }.get(src.kind, str(src))


def prepare_data(base: nn.Module, tokenizer, settings: dict, source) -> dict:
    """Tokenized train examples, dev batches and test records for every run of the grid.

    The longest example leaves room for the largest prefix of the plan and the new tokens.
    """
    prefixes = [settings["sizes"].get(m, 0) for m in ("prefix_embed", "prefix_layer")]
    prefixes += [n for m in ("prefix_embed", "prefix_layer") for n in settings["sweep"].get(m, ())]
    max_len = base.config.n_positions - max(prefixes) - settings["max_new_tokens"]
    if max_len < 16:
        raise ValueError(
            f"The base's {base.config.n_positions} positions leave no room for "
            f"{max(prefixes)} special tokens and {settings['max_new_tokens']} new "
            "tokens; use a base with more positions or smaller prefix sizes."
        )
    train_recs = _subset(load_e2e("train", source), settings["train_mrs"], settings["refs_per_mr"])
    dev_recs = _subset(load_e2e("dev", source), settings["dev_mrs"], settings["refs_per_mr"])
    pad = pad_id_of(tokenizer)
    dev = LengthBucketBatches(make_examples(dev_recs, tokenizer, max_len), 32, pad, shuffle=False)
    test = _subset(load_e2e("test", source), settings["test_mrs"], None)
    return {
        "train_examples": make_examples(train_recs, tokenizer, max_len),
        "pad_id": pad,
        "dev_batches": list(dev),
        "test": test,
        "label": data_label(source),
        "separator": list(tokenizer(" ||", add_special_tokens=False)["input_ids"]),
        "n_train_mrs": len(train_recs),
        "n_dev_mrs": len(dev_recs),
    }


def name_kept(mrs, hyps) -> float:
    """Percentage of texts that say their MR's restaurant name (case-insensitive, literal)."""
    from lorakit.data.lexicon import literal_spans
    from lorakit.data.records import parse_mr

    kept = [
        bool(literal_spans(h, parse_mr(m)["name"]))
        for m, h in zip(mrs, hyps)
        if "name" in parse_mr(m)
    ]
    return 100.0 * sum(kept) / max(len(kept), 1)


def scored(hyps: list[str], test, n_boot: int) -> dict:
    """Metrics of ``hyps`` on the ``test`` records, their bootstrap 95% intervals (``n_boot``
    resamples of the test MRs, seed 0) and the percentage of texts that keep the name."""
    refs, mrs = [list(r.refs) for r in test], [r.mr for r in test]
    cis = bootstrap_cis(hyps, refs, n=n_boot, seed=0, mrs=mrs)
    return {
        "metrics": score_all(hyps, refs, mrs=mrs),
        "name_kept": name_kept(mrs, hyps),
        "bootstrap": {k: ci.to_dict() for k, ci in cis.items()},
    }


def template_results(test, n_boot: int) -> dict:
    """The rule-based template (:mod:`lorakit.data.template`) scored on ``test`` like a run."""
    from lorakit.data.template import template_texts

    hyps = template_texts([r.mr for r in test])
    return {
        "method": "template",
        "test_mrs": len(test),
        "hyps": hyps,
        **scored(hyps, test, n_boot),
        "samples": [{"mr": r.mr, "generated": h} for r, h in zip(test[:5], hyps)],
    }


def _thin(rows: list[dict], most: int) -> list[dict]:
    step = max(1, -(-len(rows) // most))
    return rows[::step] + ([rows[-1]] if rows and (len(rows) - 1) % step else [])


def describe_run(spec: dict, report, settings: dict, base: dict | None) -> dict:
    """What a record says of the run before its results: the spec's method, size, rate and seed,
    the method's label, settings, counts and formula (``report``, from
    :func:`lorakit.baselines.apply_method`), the base block and the schedule."""
    return {
        **{k: spec[k] for k in ("method", "size", "lr", "seed")},
        "label": LABELS[spec["method"]],
        "config": report.config,
        "trainable_params": report.trainable,
        "total_params": report.total,
        "formula": report.formula,
        "formula_text": report.formula_text,
        "base": base,
        "schedule": {k: settings[k] for k in SCHEDULE},
    }


def run_one(ctx: dict, spec: dict) -> dict:
    """Fine-tune a copy of ``ctx["base"]`` with one run of the plan, decode the test MRs, score.

    ``spec``: ``{"method", "size", "lr", "seed", ...}``
    (:func:`lorakit.experiments.baselines.plan`).
    Returns the run's record: the method's settings and parameter counts, the schedule, the dev
    loss after each epoch, every test hypothesis, the metrics with their bootstrap intervals.
    """
    settings, data, device = ctx["settings"], ctx["data"], ctx["device"]
    method, size, seed = spec["method"], spec["size"], spec["seed"]
    seed_everything(seed)  # the method's own initialisation (LoRA's A, adapters, prefixes)
    model = copy.deepcopy(ctx["base"])
    report = apply_method(model, method, **method_kwargs(method, size, data["separator"], seed))
    batches = LengthBucketBatches(
        data["train_examples"], settings["batch_size"], data["pad_id"], shuffle=True, seed=seed
    )
    cfg = TrainConfig(
        lr=spec["lr"],
        weight_decay=settings["weight_decay"],
        epochs=settings["epochs"],
        max_steps=settings["steps"],
        warmup_steps=settings["warmup"],
        label_smoothing=settings["label_smoothing"],
        log_every=settings["log_every"],
        seed=seed,
        progress=False,
        deterministic=settings.get("deterministic", False),
    )
    result = train(
        model,
        report.wrap_batches(batches),
        cfg,
        eval_batches=report.wrap_batches(data["dev_batches"]),
        device=device,
    )
    if method == "lora":
        from lorakit.lora import merge_lora

        merge_lora(model)  # decode with ΔW folded into W: no extra latency (paper §4.1)
    test = data["test"]
    generator = PromptedGenerator(model, report.prepare_batch)
    n_decode = decode_batch(settings["gen_batch"], method, size)
    hyps, gen_s = decode_timed(
        generator,
        ctx["tokenizer"],
        [r.mr for r in test],
        {**settings, "gen_batch": n_decode},
        device,
    )
    del model, generator
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        **describe_run(spec, report, settings, ctx.get("base_info")),
        "decode_batch": n_decode,
        "data": {
            "train_mrs": data["n_train_mrs"],
            "train_pairs": len(data["train_examples"]),
            "dev_mrs": data["n_dev_mrs"],
            "test_mrs": len(test),
        },
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "peak_mem_mb": result.peak_mem_mb,
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "dev_loss": result.evals[-1]["eval_loss"],
        "evals": result.evals,
        "history": _thin(result.history, HISTORY_ROWS),
        "cuda_graphs": result.cuda_graphs,
        "step_time_s": result.step_time_s,
        "train_wall_s": result.wall_s,
        "generate_wall_s": gen_s,
        "hyps": hyps,
        **scored(hyps, test, settings["bootstrap"]),
        "samples": [
            {"mr": r.mr, "generated": h, "references": list(r.refs[:2])}
            for r, h in zip(test[: settings["samples"]], hyps)
        ],
    }
