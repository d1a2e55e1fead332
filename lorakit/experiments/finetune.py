"""Chapter 6's experiment: LoRA against full fine-tuning of GPT-2 on the E2E-style task.

``python -m lorakit.experiments finetune [--preset P] [--seeds S ...] [--lora-lrs LR ...]
[--full-lrs LR ...] [--jobs N] [--force] [--base NAME] [--data SOURCE] [--out DIR]``

Both methods start from the same base Φ0 (``lorakit.models.load_base``: real GPT-2 when it can be
had, else the offline base), train on the same data with :func:`lorakit.train.train`, decode the
test MRs with the paper's beam search and are scored with multi-reference BLEU, ROUGE-L, NIST and
the slot error rate (SER), each beside a bootstrap 95% interval over the test MRs
(:mod:`lorakit.experiments._stats`).

* LoRA: the paper's E2E setting (§5.4, Table 11): r = 4 on Wq, Wv, α = 32, dropout 0.1, AdamW
  lr 2e-4, weight decay 0.01, label smoothing 0.1, linear warm-up then linear decay, batch 8.
* Full fine-tuning: every weight trains, lr 5e-5 (the paper does not list its FT learning rate;
  5e-5 is the usual choice for fine-tuning all of GPT-2), the other settings the same.

Presets:

* ``ci``: a few MRs, a couple of steps, 2 beams: seconds on a CPU (a smoke test; no learning).
* ``cpu``: 400 train MRs (all their references), 1 epoch, 4 beams on 60 test MRs; minutes.
  The small offline base needs larger learning rates over so few steps (LoRA 5e-3, FT 3e-4).
* ``gpu``: the paper's schedule (:data:`lorakit.presets.PAPER_E2E`): every train MR with all its
  references, 5 epochs, batch 8, warm-up 500, label smoothing 0.1; beam 10 on the whole test
  split. On a GPU :func:`lorakit.train.train` replays the steps as CUDA graphs.

**The grid.** Every (method, learning rate, seed) is one run and writes one record,
``<out>/ch06_finetune_<preset>[_<base>_<data>][_<tag>]/<method>-lr<lr>-s<seed>.json`` (the
``_<base>_<data>`` part is left out for the offline base on the synthetic set). A run whose record
exists, made from the same ``lorakit/`` source, data and base, is skipped unless ``--force``: a
grid can be spread over several sessions. ``--budget-min M`` starts no run that the runs so far
say would end after M minutes. ``--jobs N`` makes N runs at once
(:mod:`lorakit.experiments._jobs`). Chapter 6's grid::

    python -m lorakit.experiments finetune --preset gpu --seeds 0 1 2 \\
        --lora-lrs 2e-4 5e-4 1e-3 2e-3 --full-lrs 2e-5 5e-5 1e-4

``python -m lorakit.experiments finetune-report`` aggregates the records
(:mod:`lorakit.experiments.finetune_report`). A record holds, for its run: the loss curve, dev
loss per epoch, the metrics and their bootstrap intervals, **every generated text** (in the order
of the test split), trainable/total parameters, peak GPU memory, step time, how the steps ran,
the wall time of training and decoding, checkpoint size, and the ``template`` row: the rule-based
realizer of :mod:`lorakit.data.template` scored the same way.

**The paper's base on the real data** (with internet access)::

    python -m lorakit.experiments finetune --preset gpu --base gpt2-medium --data real --seeds 0 1 2

trains GPT-2 medium on the real E2E data with the paper's settings (Table 3's setting).
"""

from __future__ import annotations

from lorakit.data.sources import data_source
from lorakit.experiments._finetune_run import (  # noqa: F401  (re-exported)
    load_task,
    prepare_method,
    run_method,
    scored,
    template_row,
)
from lorakit.experiments._finetune_settings import (  # noqa: F401  (re-exported)
    BOOTSTRAP_METRICS,
    GRID,
    LORA,
    METHODS,
    N_SAMPLES,
    PRESETS,
    base_block,
    preset_settings,
    settings_block,
)
from lorakit.presets import get_preset, pick_device


def run_finetune(
    preset: str | None = None,
    base_name: str = "auto",
    methods=METHODS,
    device: str | None = None,
    progress: bool = True,
    data_root=None,
    loaded: tuple | None = None,
    lr: dict[str, float] | None = None,
    source=None,
    seed: int = 0,
) -> dict:
    """Every method once, from one seed, in this process (the live run of chapter 6).

    Returns ``{"base", "data", "settings", "template", "methods": {name: run_method(...)}}``.
    ``lr`` overrides the preset's learning rate per method, e.g. ``{"lora": 1e-3}``.
    ``source``: the data (:func:`lorakit.data.sources.data_source`; default ``"auto"``, or
    ``data_root``, its former name for a folder). ``loaded`` may pass an already loaded
    ``(model, tokenizer, info)`` from :func:`lorakit.models.load_base` (it is copied, never
    changed); else ``base_name`` is loaded.
    """
    from lorakit.models import load_base

    preset = preset or get_preset()
    settings = preset_settings(preset, lr)
    dev = pick_device(device)
    src = data_source(source if source is not None else data_root or "auto")
    base, tokenizer, info = (
        loaded
        if loaded is not None
        else load_base(base_name, preset=preset, device="cpu", verbose=progress)
    )
    data = load_task(tokenizer, settings, src, base.config.n_positions)
    results = {
        m: run_method(base, tokenizer, m, data, settings, dev, progress, seed) for m in methods
    }
    return {
        "base": base_block(info, base),
        "data": data["info"],
        "settings": settings_block(settings, preset),
        "template": template_row(data["test"], settings.get("bootstrap", 0)),
        "methods": results,
    }


def summary_table(results: dict) -> str:
    """A plain-text table of the methods in a :func:`run_finetune` result (or a record's results),
    with the template baseline's row first when the result has one."""
    head = (
        "method",
        "BLEU",
        "ROUGE-L",
        "NIST",
        "SER %",
        "trainable",
        "of total",
        "peak MiB",
        "step ms",
        "checkpoint",
    )

    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    def scores(m):
        return (
            num(m["bleu"], ".1f"),
            num(m.get("rouge_l"), ".1f"),
            num(m.get("nist"), ".2f"),
            num(m.get("ser"), ".1f"),
        )

    rows = [head]
    if "template" in results:
        rows.append(("template", *scores(results["template"]["metrics"]), "0", "-", "-", "-", "-"))
    for name, r in results["methods"].items():
        rows.append(
            (
                name,
                *scores(r["metrics"]),
                f"{r['trainable_params']:,}",
                f"{100 * r['trainable_params'] / r['total_params']:.3f}%",
                num(r["peak_mem_mb"], ".0f"),
                num(None if r["step_time_s"] is None else 1000 * r["step_time_s"], ".1f"),
                _size(r["checkpoint_bytes"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def main(argv: list[str] | None = None):
    """The grid's command line; returns what it did (a ``GridOutcome``)."""
    from lorakit.experiments._finetune_grid import main as grid_main

    return grid_main(argv, doc=__doc__)
