"""Chapters 8-9's experiment: which weight matrices and which rank to adapt (paper §7.1-§7.3).

``python -m lorakit.experiments which-rank [--preset P] [--seeds ...] [--jobs N] [--force]
[--list] [--base NAME] [--data SOURCE] [--out DIR]``

One grid of LoRA fine-tunes of the base on the E2E-style task feeds both chapters, each
configuration trained once per seed:

* Table 5: one parameter budget (``r x number of matrices = 8``): {Wq}, {Wk}, {Wv}, {Wo} at r=8,
  {Wq,Wk} and {Wq,Wv} at r=4, all four at r=2;
* Table 6: r in ``ranks`` (1, 2, 4, 8, 64 in ``gpu``) for {Wq}, {Wq,Wv} and {Wq,Wk,Wv,Wo}; the
  rows Table 5 already has are not trained again;
* chapter 9: the runs of {Wq,Wv} at r = 4, 8 and the highest rank also keep the factors A and B
  of ΔWq and ΔWv for the first, middle and last layer (``<run id>.safetensors`` beside the
  record) and how far each A moved from its random start; the frozen Wq, Wv of the middle layer
  are kept once, in ``base_weights.safetensors`` (:mod:`lorakit.experiments.subspace_report`).

Every run: α = 32 for every r (the paper fixes α and scales the update by α/r), LoRA dropout 0.1,
label smoothing 0.1, AdamW with warm-up then linear decay; the dev loss after each epoch; beam
search on the test MRs (the paper's beam 10 in ``gpu``) scored with BLEU, ROUGE-L, NIST and the
slot error rate (SER), each with a bootstrap 95% interval over the test MRs.

**One record per run**, resumable (:mod:`lorakit.experiments._grid`): ``data/runs/
ch08_which_rank_<preset>/<run id>.json``, e.g. ``q+v-r4-s1.json``; running again makes only the
runs without a current record (``--force``: all). ``python -m lorakit.experiments
which-rank-report`` builds Tables 5 and 6 and the verdicts from whatever records exist.

Presets: ``ci`` a smoke test (seconds); ``cpu`` a short live run (one seed; {Wq,Wv} at the
ranks chapter 9 reads gets two); ``gpu``: every train MR with all its references, **2 epochs**
of batch 8 (~10k steps), warm-up 500, lr 1e-3 (a larger rate than the paper's 2e-4, which is
tuned for 5 epochs), the whole test split, 3 seeds for every row.
"""

from __future__ import annotations

import argparse

from lorakit.cli import positive_int
from lorakit.data.sources import data_source
from lorakit.experiments import _grid
from lorakit.experiments._baselines_run import template_results
from lorakit.experiments._finetune_settings import base_block
from lorakit.experiments._grid_command import (
    GridCall,
    list_plan,
    load_inputs,
    overrides_from,
    refuse_schedule_overrides,
    run_options,
)
from lorakit.experiments._which_rank_run import (  # noqa: F401  (re-exported for the chapters)
    ALPHA,
    base_weight,
    factor_layers,
    prepare_data,
    run_config,
    weights_label,
)
from lorakit.experiments._which_rank_settings import (  # noqa: F401  (re-exported)
    BUDGET_RANK,
    GRID,
    PRESETS,
    R_LOW,
    TABLE5,
    TABLE6_SETS,
    configs,
    factor_ranks,
    plan,
    settings_for,
)
from lorakit.experiments.which_rank_report import (  # noqa: F401  (ch. 8; runs claims)
    claim_rows,
    clear_difference,
)
from lorakit.presets import get_preset


def base_weights_results(base, settings: dict) -> tuple[dict, dict]:
    """The frozen Wq, Wv of the middle layer (chapter 9's Table 7), as a pseudo-run record."""
    n_layer, mid = base.config.n_layer, base.config.n_layer // 2
    tensors = {f"W.l{mid}.{m}": base_weight(base, mid, m).float().cpu() for m in ("q", "v")}
    results = {
        "layers": factor_layers(n_layer),
        "analysis_layer": mid,
        "alpha": ALPHA,
        "r_low": R_LOW,
        "r_high": max(settings["ranks"]),
        "n_embd": base.config.n_embd,
        "n_layer": n_layer,
    }
    return results, tensors


def run_which_rank(
    preset: str | None = None,
    base_name: str = "auto",
    device: str | None = None,
    progress: bool = True,
    loaded: tuple | None = None,
    only_adapters: bool = False,
    source=None,
    jobs: int = 1,
    out: str | None = None,
    force: bool = False,
    budget_min: float | None = None,
    overrides: dict | None = None,
    config: dict | None = None,
) -> list[dict]:
    """Make the grid's runs; returns the records made now, after two that are not runs:
    ``base_weights`` (the frozen Wq, Wv of the middle layer, its tensors under ``"tensors"``)
    and ``template`` (the rule-based realizer scored on the same test MRs).

    ``out``: the records' folder; ``None`` keeps them in memory (a notebook's live run). Runs
    with factors carry them under ``"tensors"`` in memory and in ``<run id>.safetensors`` in
    ``out``. ``only_adapters``: only the {Wq,Wv} runs chapter 9 reads, not decoded.
    """
    preset = preset or get_preset()
    settings = settings_for(preset, overrides)
    src, (base, tokenizer, info) = load_inputs(preset, base_name, loaded, source, progress)
    if max(settings["ranks"]) > base.config.n_embd:
        raise ValueError(
            f"Preset {preset!r} trains ranks up to {max(settings['ranks'])} but the "
            f"base is only {base.config.n_embd} wide; use a wider base or a smaller "
            "preset."
        )
    specs = plan(settings, only_adapters)
    data = prepare_data(base, tokenizer, settings, src)
    config = {"grid": GRID, **(config or {})}
    call = GridCall(out, preset, config, src, jobs, device, force, budget_min, progress)
    base_rec = base_block(info, base)
    results, tensors = base_weights_results(base, settings)
    results["base"] = base_rec  # which build these weights are (chapter 9 pairs them with ΔW)
    weights = {"name": "base_weights", "current": True, "results": results, "tensors": tensors}
    template = {
        "name": "template",
        "current": True,
        "results": template_results(data["test"], settings["bootstrap"]),
    }
    done = call.done(base_rec)
    if out is not None and (force or "base_weights" not in done):
        results["tensors_file"] = _grid.save_tensors(tensors, f"{out}/base_weights").name
        call.save_once("base_weights", results, done)
    if not only_adapters:
        call.save_once("template", template["results"], done)
    context = {
        "base": base,
        "tokenizer": tokenizer,
        "data": data,
        "settings": settings,
        "score": not only_adapters,
        "base_info": base_rec,
    }
    made = call.run(run_config, specs, context, "ch08", _progress_line)
    return [weights, template, *made]


def _progress_line(spec: dict, r: dict) -> str:
    m = r.get("metrics")
    score = "" if m is None else f", BLEU {m['bleu']:.1f}, SER {m['ser']:.1f}%"
    return f"{spec['id']:14s}: dev loss {r['dev_loss']:.3f}{score}, train {r['train_s']:.0f} s"


def main(argv: list[str] | None = None) -> None:
    from lorakit.experiments import which_rank_report as report

    parser = argparse.ArgumentParser(
        prog="python -m lorakit.experiments which-rank", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds of every row (default: the preset's)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="override the preset's epochs"
    )
    _grid.add_grid_arguments(parser, GRID, jobs_help="fine-tunes at once")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    refuse_schedule_overrides(parser, args, ("epochs",))
    preset = args.preset or get_preset()
    overrides = overrides_from(args, ("seeds", "epochs"))
    if args.seeds is not None:
        overrides["qv_seeds"] = args.seeds
    src = data_source(args.data)
    folder = _grid.grid_dir(GRID, preset, args.out, args.base, src.kind)
    if args.list:
        list_plan(plan(settings_for(preset, overrides)), folder, args.force, src)
        return
    run_which_rank(
        preset,
        args.base,
        args.device,
        not args.no_progress,
        **run_options(args, folder, src, overrides),
    )
    if not args.no_progress:
        report.main(["--preset", preset, "--out", str(folder)])
