"""One run of chapter 8's grid: LoRA on some attention matrices at one rank, one seed.

Split out of :mod:`lorakit.experiments.which_rank` (which re-exports what the chapters use).
A run of ``{Wq,Wv}`` at a rank chapter 9 reads also returns its factors A and B of ΔWq and
ΔWv for a few layers (fp32, as NumPy arrays under ``"_tensors"``; the grid writes them beside the
record) and how far each A moved from its random initialisation.
"""

from __future__ import annotations

import copy
import math

import torch

import lorakit
from lorakit.data import LengthBucketBatches, load_e2e, make_batches, make_examples, pad_id_of
from lorakit.experiments._baselines_run import _thin, data_label, scored
from lorakit.experiments._finetune_run import _subset, decode_timed
from lorakit.presets import seed_everything
from lorakit.train import TrainConfig, evaluate_loss, train

ALPHA, DROPOUT, LABEL_SMOOTHING = 32, 0.1, 0.1


def weights_label(targets) -> str:
    """``["q", "v"]`` -> ``{Wq,Wv}``."""
    return "{" + ",".join(f"W{t}" for t in targets) + "}"


def factor_layers(n_layer: int) -> list[int]:
    """The layers whose factors chapter 9 reads: first, middle, last."""
    return sorted({0, n_layer // 2, n_layer - 1})


def base_weight(model: torch.nn.Module, layer: int, which: str) -> torch.Tensor:
    """GPT-2's frozen ``W_q``/``W_k``/``W_v`` of one layer as a (d, k) = (out, in) matrix.

    HF stores ``attn.c_attn`` as a Conv1D of weight (k, 3d) with q, k, v side by side.
    """
    attn = model.transformer.h[layer].attn.c_attn
    base = getattr(attn, "base", attn)  # under LoRA the Conv1D is wrapped
    d = base.weight.shape[1] // 3
    i = "qkv".index(which)
    return base.weight[:, i * d : (i + 1) * d].T.detach()


def prepare_data(base, tokenizer, settings: dict, source) -> dict:
    """Train examples, dev batches and test records shared by every run of the grid."""
    max_len = base.config.n_positions
    dev = _subset(load_e2e("dev", source), settings["dev_mrs"], settings["refs_per_mr"])
    train_recs = _subset(load_e2e("train", source), settings["train_mrs"], settings["refs_per_mr"])
    return {
        "examples": make_examples(train_recs, tokenizer, max_len),
        "pad_id": pad_id_of(tokenizer),
        "n_train_mrs": len(train_recs),
        "dev_batches": list(make_batches(dev, tokenizer, 64, max_len, shuffle=False)),
        "test": _subset(load_e2e("test", source), settings["test_mrs"], None),
        "label": data_label(source),
    }


def _factor_tensors(model, layers) -> dict[str, torch.Tensor]:
    found = lorakit.lora_factors(model)
    out = {}
    for layer in layers:
        for m in ("q", "v"):
            A, B = found[f"transformer.h.{layer}.attn.c_attn.{m}"]
            out[f"l{layer}.{m}.A"] = A.detach().float().cpu().clone()
            out[f"l{layer}.{m}.B"] = B.detach().float().cpu().clone()
    return out


def run_config(ctx: dict, spec: dict) -> dict:
    """Fine-tune a copy of ``ctx["base"]`` with LoRA on ``spec["targets"]`` at rank ``spec["r"]``
    (seed ``spec["seed"]``), then evaluate it: dev loss after each epoch, and (unless
    ``ctx["score"]`` is False) beam-search decodes of the test MRs, scored with bootstrap
    intervals. ``spec["factors"]``: keep A, B of ΔWq, ΔWv at :func:`factor_layers`.
    """
    settings, data, device = ctx["settings"], ctx["data"], ctx["device"]
    targets, r, seed = tuple(spec["targets"]), spec["r"], spec["seed"]
    seed_everything(seed)  # LoRA's A init, then dropout and data order below
    model = copy.deepcopy(ctx["base"])
    lorakit.apply_lora(
        model, lorakit.LoRAConfig(r=r, alpha=ALPHA, targets=list(targets), dropout=DROPOUT)
    )
    trainable, _ = lorakit.count_parameters(model)
    layers = factor_layers(model.config.n_layer) if spec.get("factors") else []
    start_factors = _factor_tensors(model, layers)
    batches = LengthBucketBatches(
        data["examples"], settings["batch_size"], data["pad_id"], shuffle=True, seed=seed
    )
    steps = settings["steps"]
    epochs = settings["epochs"] if steps is None else math.ceil(steps / len(batches))
    cfg = TrainConfig(
        lr=settings["lr"],
        weight_decay=0.01,
        epochs=epochs,
        max_steps=steps,
        warmup_steps=settings["warmup"],
        label_smoothing=LABEL_SMOOTHING,
        log_every=settings["log_every"],
        seed=seed,
        progress=False,
        deterministic=settings.get("deterministic", False),
    )
    result = train(model, batches, cfg, eval_batches=data["dev_batches"], device=device)
    out = {
        "targets": list(targets),
        "r": r,
        "seed": seed,
        "alpha": ALPHA,
        "lr": cfg.lr,
        "trainable_params": trainable,
        "steps": result.steps,
        "train_s": result.wall_s,
        "schedule": {
            "epochs": epochs,
            "steps": steps,
            "batch_size": settings["batch_size"],
            "warmup": settings["warmup"],
            "beams": settings["beams"],
        },
        "final_train_loss": result.history[-1]["loss"] if result.history else None,
        "dev_loss": evaluate_loss(model, data["dev_batches"], device),
        "evals": result.evals,
        "history": _thin(result.history, 40),
        "base": ctx.get("base_info"),
        "data": {"train_pairs": len(data["examples"]), "test_mrs": len(data["test"])},
    }
    if layers:
        factors = _factor_tensors(model, layers)
        out["a_moved"] = {
            k[:-2]: float(
                torch.linalg.norm(v - start_factors[k]) / torch.linalg.norm(start_factors[k])
            )
            for k, v in factors.items()
            if k.endswith(".A")
        }
        out["_tensors"] = {k: v.numpy() for k, v in factors.items()}
    if ctx.get("score", True):
        lorakit.merge_lora(model)
        test = data["test"]
        mrs = [x.mr for x in test]
        hyps, out["decode_s"] = decode_timed(model, ctx["tokenizer"], mrs, settings, device)
        out.update(
            hyps=hyps,
            **scored(hyps, test, settings["bootstrap"]),
            sample={"mr": test[0].mr, "generated": hyps[0]},
        )
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out
