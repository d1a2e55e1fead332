"""Training-step time and peak memory: LoRA against full fine-tuning and against PEFT's LoRA.

``python -m lorakit.bench train-step`` runs, in one process, one optimizer step after another on
the GPT-2 medium architecture (random weights: 24 layers, width 1024, vocab 50,257), batch 8,
sequence 512, fp32 master weights with bf16 autocast, for:

* ``full``         every weight trains (full fine-tuning);
* ``lorakit_qv``   lorakit LoRA on Wq, Wv (slices of the fused ``c_attn``; the paper's setting);
* ``lorakit_qkv``  lorakit LoRA on Wq, Wk, Wv;
* ``peft_qkv``     PEFT's LoRA on ``c_attn`` (all of q, k, v: PEFT cannot take slices); skipped
  with a note when ``peft`` is not installed.

Every method gets the same model options (dropout, SDPA attention, GELU kernel), the same batch,
the same loss
(:func:`lorakit.train.causal_lm_loss`, label smoothing 0.1), the same optimizer (AdamW, fused
on CUDA, lr 2e-4, weight decay 0.01 on matrices) and gradient clipping: only the set of trainable
weights and the layer implementation differ. LoRA: r = 4, α = 32, dropout 0.1.

Where a LoRA step spends time besides the frozen matmuls, and what lorakit does about it:

* the LM head and the loss over 50,257 words: the (B·T, V) logits in fp32 are the largest tensors
  of the step; ``causal_lm_loss`` runs the head in chunks and never keeps them
  (:func:`lorakit.train.linear_cross_entropy`), for every method alike;
* elementwise work, which LoRA does not shrink: GPT-2's tanh-GELU runs as one fused kernel
  (``--activation gelu_pytorch_tanh``, the same function as HF's ``gelu_new``, which runs it op by
  op and keeps several 4·d-wide intermediates for backward); for every method alike;
* LoRA's own small matmuls, dropout and the add onto the base output: lorakit's layers
  (``lorakit.lora``) adapt q and v as slices of ``c_attn`` so k costs nothing.

Per method: ``--warmup`` untimed steps, then ``--steps`` steps timed with CUDA events (forward,
backward and optimizer separately); peak memory is ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, with the model built after the reset (weights, gradients, optimizer
state and activations all count). Everything is freed between methods.

Goals (DESIGN §8, as ratios in one run): lorakit LoRA step <= 0.75 x full fine-tuning (theory:
about 2/3, the weight-gradient matmuls are skipped), lorakit <= 0.9 x PEFT on the same targets,
peak memory LoRA <= 0.6 x full fine-tuning. Written to ``data/runs/bench/train_step.json``
(or ``--out DIR`` / ``--out FILE.json``). ``--small --device cpu`` runs a tiny model in seconds.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

import torch

import lorakit
from lorakit.presets import get_preset, pick_device
from lorakit.runs import RUNS_DIR, save_record
from lorakit.train import _param_groups, causal_lm_loss

METHODS = ("full", "lorakit_qv", "lorakit_qkv", "peft_qkv")
FULL = dict(arch=dict(n_layer=24, n_embd=1024, n_head=16, n_positions=1024, vocab_size=50257),
            batch=8, seq=512, warmup=5, steps=20)
SMALL = dict(arch=dict(n_layer=2, n_embd=64, n_head=2, n_positions=128, vocab_size=512),
             batch=2, seq=32, warmup=1, steps=2)
LORA = dict(r=4, alpha=32, dropout=0.1)


def build_model(arch: dict, device: torch.device, dropout: float, seed: int = 0,
                activation: str = "gelu_pytorch_tanh"):
    """GPT-2 of shape ``arch`` with random fp32 weights on ``device``, SDPA attention."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(**arch, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                        activation_function=activation)
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = GPT2LMHeadModel(config)
    return model.train()


def apply_method(model, method: str):
    """Make ``method``'s weights trainable; return the module the loss runs on (an HF causal LM)."""
    if method == "full":
        return model
    if method in ("lorakit_qv", "lorakit_qkv"):
        targets = ["q", "v"] if method == "lorakit_qv" else ["q", "k", "v"]
        lorakit.apply_lora(model, lorakit.LoRAConfig(targets=targets, **LORA))
        return model
    if method == "peft_qkv":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                         target_modules=["c_attn"], fan_in_fan_out=True, bias="none")
        # the LoRA layers are injected into ``model`` in place; the loss runs on it directly,
        # exactly as for the other methods
        get_peft_model(model, cfg)
        return model
    raise ValueError(f"Unknown method {method!r}; use one of {', '.join(METHODS)}.")


class _Timer:
    """Times phases with CUDA events on a GPU, wall clock elsewhere (milliseconds)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed(self, a, b) -> float:
        return a.elapsed_time(b) if self.cuda else (b - a) * 1000.0


def measure(method: str, settings: dict, device: torch.device, dropout: float,
            compile_: bool = False, activation: str = "gelu_pytorch_tanh") -> dict:
    """Build, adapt and step one model; return timings (ms), peak memory (MiB) and counts."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = build_model(settings["arch"], device, dropout, activation=activation)
    model = apply_method(model, method)
    trainable, total = lorakit.count_parameters(model)
    opt = torch.optim.AdamW(_param_groups(model, 0.01), lr=2e-4, fused=cuda)
    params = [p for p in model.parameters() if p.requires_grad]
    backbone = torch.compile(model.base_model) if compile_ else None
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, settings["arch"]["vocab_size"], (settings["batch"], settings["seq"]),
                        generator=g).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    timer, rows = _Timer(device), []
    for i in range(settings["warmup"] + settings["steps"]):
        t0 = timer.mark()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss, _ = causal_lm_loss(model, batch, 0.1, backbone)
        t1 = timer.mark()
        loss.backward()
        t2 = timer.mark()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = timer.mark()
        if i >= settings["warmup"]:
            rows.append((t0, t1, t2, t3))
    if cuda:
        torch.cuda.synchronize(device)
    step = [timer.elapsed(a, d) for a, _, _, d in rows]
    out = {
        "method": method, "trainable_params": trainable, "total_params": total,
        "step_ms": statistics.mean(step), "step_ms_median": statistics.median(step),
        "step_ms_std": statistics.pstdev(step),
        "forward_ms": statistics.mean(timer.elapsed(a, b) for a, b, _, _ in rows),
        "backward_ms": statistics.mean(timer.elapsed(b, c) for _, b, c, _ in rows),
        "optimizer_ms": statistics.mean(timer.elapsed(c, d) for _, _, c, d in rows),
        "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        "final_loss": float(loss.detach()),
    }
    del model, opt, params, backbone, loss, batch, ids
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return out


def ratios(results: dict[str, dict]) -> dict:
    """Step-time and peak-memory ratios, and whether each goal is met (None: not measured)."""
    def r(a: str, b: str, key: str):
        if a in results and b in results and results[a][key] and results[b][key]:
            return results[a][key] / results[b][key]
        return None

    out = {
        "step_lorakit_qv_vs_full": r("lorakit_qv", "full", "step_ms"),
        "step_lorakit_qkv_vs_full": r("lorakit_qkv", "full", "step_ms"),
        "step_peft_qkv_vs_full": r("peft_qkv", "full", "step_ms"),
        "step_lorakit_qkv_vs_peft_qkv": r("lorakit_qkv", "peft_qkv", "step_ms"),
        "mem_lorakit_qv_vs_full": r("lorakit_qv", "full", "peak_mem_mb"),
        "mem_lorakit_qkv_vs_full": r("lorakit_qkv", "full", "peak_mem_mb"),
        "mem_peft_qkv_vs_full": r("peft_qkv", "full", "peak_mem_mb"),
    }

    def ok(value, limit):
        return None if value is None else bool(value <= limit)

    out["goals"] = {
        "lorakit_step_le_0.75_full": ok(out["step_lorakit_qv_vs_full"], 0.75),
        "lorakit_step_le_0.9_peft": ok(out["step_lorakit_qkv_vs_peft_qkv"], 0.9),
        "lorakit_mem_le_0.6_full": ok(out["mem_lorakit_qv_vs_full"], 0.6),
    }
    return out


def run(args: argparse.Namespace) -> dict:
    device = pick_device(args.device)
    settings = dict(SMALL if args.small else FULL)
    for key in ("batch", "seq", "warmup", "steps"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    results, notes = {}, []
    for method in args.methods:
        if method == "peft_qkv":
            try:
                import peft  # noqa: F401
            except ImportError:
                notes.append("peft_qkv skipped: peft is not installed (pip install peft).")
                print(notes[-1])
                continue
        results[method] = measure(method, settings, device, args.dropout, args.compile,
                                  args.activation)
        r = results[method]
        mem = f"{r['peak_mem_mb']:.0f} MiB" if r["peak_mem_mb"] is not None else "n/a"
        print(f"{method:12s} step {r['step_ms']:8.2f} ms (fwd {r['forward_ms']:.1f}, bwd "
              f"{r['backward_ms']:.1f}, opt {r['optimizer_ms']:.1f})  peak {mem}  "
              f"trainable {r['trainable_params']:,}")
    summary = ratios(results)
    for key, value in summary.items():
        if key != "goals" and value is not None:
            print(f"{key:32s} {value:.3f}")
    print("goals:", summary["goals"])
    return {"settings": settings, "device": str(device), "model_dropout": args.dropout,
            "activation": args.activation,
            "lora": LORA, "methods": results, "ratios": summary, "notes": notes}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lorakit.bench train-step", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: picked by hardware)")
    p.add_argument("--small", action="store_true", help="tiny model: a seconds-long smoke run")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seq", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="the model's own dropout, the same for every method (default 0)")
    p.add_argument("--activation", default="gelu_pytorch_tanh",
                   choices=["gelu_pytorch_tanh", "gelu_new"],
                   help="GPT-2's tanh GELU: one fused kernel (default) or HF's op-by-op gelu_new")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone (all methods)")
    p.add_argument("--out", default=None, help="directory, or a .json file (default data/runs/bench)")
    args = p.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")
    start = time.perf_counter()
    results = run(args)
    out = Path(args.out) if args.out else RUNS_DIR / "bench"
    name = "train_step"
    if out.suffix == ".json":
        out, name = out.parent, out.stem
    config = {k: v for k, v in vars(args).items() if k != "out"}
    path = save_record(name, results, preset="small" if args.small else get_preset(),
                       config=config, wall_s=time.perf_counter() - start, out_dir=out)
    print(f"wrote {path}")
