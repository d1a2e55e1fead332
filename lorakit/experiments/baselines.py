"""Chapter 7's experiment: the paper's Table 3 and Figure 2 on our task (§5.1, §5.4).

``python -m lorakit.experiments baselines [--preset P] [--part table3|figure2|all] [--seeds ...]
[--lr METHOD=LR[,LR...]] [--jobs N] [--force] [--list] [--base NAME] [--data SOURCE] [--out DIR]``

Every method of :mod:`lorakit.baselines` (FT, FT-Top2, BitFit, PreEmbed, PreLayer, AdapterL,
AdapterH, LoRA r=4 on Wq, Wv with α=32) fine-tunes a copy of the same base Φ0 with the same
loop, :func:`lorakit.train.train` (AdamW, weight decay 0.01, linear warm-up then decay, label
smoothing 0.1), on batches whose order the seed fixes; then it decodes the test MRs (the paper's
beam search in the ``gpu`` preset: beam 10, no repeated 4-grams, length penalty 0.9) and is
scored with BLEU, ROUGE-L, NIST and the slot error rate (SER), with a bootstrap 95% interval over
test MRs (:mod:`lorakit.experiments._stats`). The prefix methods' special tokens go into the
training batches and into the decoding prompts alike; LoRA is merged before decoding.

**One record per run**, resumable (:mod:`lorakit.experiments._grid`): each run (method, size,
learning rate, seed) writes ``data/runs/ch07_baselines_<preset>/<run id>.json`` as soon as it
ends, with all its hypotheses; running the command again makes only the runs that have no record
at the current source (``--force``: all again). ``--list`` prints the plan and what is done.
``python -m lorakit.experiments baselines-report`` builds Table 3, Figure 2 and the verdicts from
whatever records exist and lists the runs not made.

Presets:

* ``ci``: a smoke test (seconds on a CPU; nothing is learned).
* ``cpu``: a few hundred MRs, 60 steps per run, one seed (a live run of minutes on a laptop).
* ``gpu``: chapter 6's budget, the paper's schedule (Appendix D.3): every train MR with all its
  references, 5 epochs, batch 8, warm-up 500 steps; the whole test split, beam 10; 3 seeds for
  every Table 3 method; Figure 2 sweeps the prefix length up to 512 special tokens, the AdapterH
  bottleneck and the LoRA rank, 2 seeds per point. One learning rate per method by default
  (:data:`LR`); ``--lr lora=2e-4,1e-3`` runs those rates in place of the preset's (records of
  other rates stay), and the report picks, per method, the rate with the lowest mean validation
  loss among the records (never the test score). ``--epochs``, ``--steps`` and ``--test-mrs``
  shorten every run and need ``--out DIR``: in the preset's folder a shortened run would count
  as a finished run of the plan.

``--data``: ``auto`` (default), ``synthetic``, ``real`` or a folder with the splits
(:func:`lorakit.data.sources.data_source`); ``--jobs N``: N runs at once in worker processes
(spread over the GPUs of the host; :mod:`lorakit.experiments._jobs`).
"""

from __future__ import annotations

import argparse

from lorakit.cli import positive_int
from lorakit.data.sources import data_source
from lorakit.experiments import _grid
from lorakit.experiments._baselines_run import (  # noqa: F401  (re-exported)
    PromptedGenerator,
    RealTokenNoRepeatNGram,
    data_label,
    method_kwargs,
    prepare_data,
    run_one,
    template_results,
)
from lorakit.experiments._baselines_settings import (  # noqa: F401  (re-exported)
    GRID,
    LABELS,
    LR,
    LR_SHORT,
    PARTS,
    PRESETS,
    SIZE_NAME,
    TABLE3,
    plan,
    settings_for,
)
from lorakit.experiments._baselines_twins import import_twins
from lorakit.experiments._finetune_settings import base_block
from lorakit.experiments._grid_command import (
    GridCall,
    list_plan,
    load_inputs,
    overrides_from,
    refuse_schedule_overrides,
    run_options,
)
from lorakit.presets import get_preset


def run_baselines(
    preset: str | None = None,
    base_name: str = "auto",
    device: str | None = None,
    progress: bool = True,
    loaded: tuple | None = None,
    overrides: dict | None = None,
    source=None,
    jobs: int = 1,
    part: str = "all",
    out: str | None = None,
    force: bool = False,
    budget_min: float | None = None,
    config: dict | None = None,
) -> list[dict]:
    """Make the grid's runs; returns the records made now (results under ``"results"``), the
    template's first (``name == "template"``: the rule-based realizer scored on the same MRs).

    ``out``: the records' folder; ``None`` keeps them in memory (the notebook's live run; then
    every run of the plan is made). ``loaded`` may pass ``(model, tokenizer, info)`` from
    :func:`lorakit.models.load_base` (copied, never changed); else ``base_name`` is loaded.
    ``overrides`` replaces entries of the preset's settings (e.g. ``{"epochs": 2}``).
    """
    preset = preset or get_preset()
    settings = settings_for(preset, overrides)
    src, (base, tokenizer, info) = load_inputs(preset, base_name, loaded, source, progress)
    specs = plan(settings, part)
    data = prepare_data(base, tokenizer, settings, src)
    config = {"grid": GRID, **(config or {})}
    call = GridCall(out, preset, config, src, jobs, device, force, budget_min, progress)
    template = {
        "name": "template",
        "current": True,
        "results": template_results(data["test"], settings["bootstrap"]),
    }
    base_rec = base_block(info, base)
    call.save_once("template", template["results"], call.done(base_rec))
    context = {
        "base": base,
        "tokenizer": tokenizer,
        "data": data,
        "settings": settings,
        "base_info": base_rec,
    }
    if out is not None:  # Table 3's FT and LoRA runs that chapter 6's grid has made
        import_twins(specs, settings, out, preset, config, src, context, force, call.say)
    made = call.run(run_one, specs, context, "ch07", _progress_line)
    return [template, *made]


def _progress_line(spec: dict, r: dict) -> str:
    m = r["metrics"]
    return (
        f"{spec['id']}: BLEU {m['bleu']:.1f}, SER {m['ser']:.1f}%, dev loss {r['dev_loss']:.3f}, "
        f"train {r['train_wall_s']:.0f} s, decode {r['generate_wall_s']:.0f} s"
    )


def _lr_option(text: str) -> tuple[str, tuple[float, ...]]:
    try:
        method, rates = text.split("=")
        lrs = tuple(float(x) for x in rates.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"--lr {text!r}: write METHOD=LR[,LR...], e.g. lora=2e-4,1e-3"
        ) from err
    method = method.replace("-", "_")
    if method not in TABLE3 or not lrs or min(lrs) <= 0:
        raise argparse.ArgumentTypeError(
            f"--lr {text!r}: the method must be one of {', '.join(TABLE3)} and the rates > 0"
        )
    return method, lrs


def main(argv: list[str] | None = None) -> None:
    from lorakit.experiments import baselines_report as report

    parser = argparse.ArgumentParser(
        prog="python -m lorakit.experiments baselines", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--part", choices=PARTS, default="all")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds of Table 3 (default: the preset's)",
    )
    parser.add_argument(
        "--sweep-seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds of each Figure 2 point (default: the preset's)",
    )
    parser.add_argument(
        "--lr",
        type=_lr_option,
        action="append",
        default=[],
        help="learning rates of one method, in place of the preset's, e.g. lora=2e-4,1e-3 "
        "(repeatable)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="override the preset's epochs"
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="stop each run after this many optimizer steps",
    )
    parser.add_argument(
        "--test-mrs", type=positive_int, default=None, help="decode only the first N test MRs"
    )
    _grid.add_grid_arguments(parser, GRID, jobs_help="runs at once")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    refuse_schedule_overrides(parser, args, ("epochs", "steps", "test_mrs"))
    preset = args.preset or get_preset()
    overrides = overrides_from(args, ("seeds", "sweep_seeds", "epochs", "steps", "test_mrs"))
    if args.lr:
        overrides["lrs"] = dict(args.lr)
    src = data_source(args.data)
    folder = _grid.grid_dir(GRID, preset, args.out, args.base, src.kind)
    if args.list:
        list_plan(plan(settings_for(preset, overrides), args.part), folder, args.force, src)
        return
    run_baselines(
        preset,
        args.base,
        args.device,
        progress=not args.quiet,
        part=args.part,
        **run_options(args, folder, src, overrides),
    )
    if not args.quiet:
        report.main(["--preset", preset, "--out", str(folder)])


__all__ = [
    "GRID",
    "LABELS",
    "LR",
    "PRESETS",
    "SIZE_NAME",
    "TABLE3",
    "PromptedGenerator",
    "RealTokenNoRepeatNGram",
    "data_label",
    "method_kwargs",
    "plan",
    "run_baselines",
    "run_one",
    "settings_for",
]
