"""The report of ``python -m lorakit.bench train-step``: the ratios it states, its goals, its table.

:mod:`lorakit.bench.train_step` measures; this module turns the measurements of one mode
(``{variant: {"step_ms": ..., "peak_mem_mb": ...}}``) into the comparisons the record keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

FROZEN_BF16 = "_frozen_bf16"


@dataclass(frozen=True)
class Comparison:
    """One ratio of the report: ``numerator / denominator`` of ``metric``.

    With a ``baseline`` the ratio is ``(numerator - baseline) / (denominator - baseline)``: what
    each adds on top of the baseline. A ``goal`` names a target the ratio must not exceed
    (``limit``); comparisons without one are informational.
    """

    numerator: str
    denominator: str
    metric: str  # "step_ms" or "peak_mem_mb"
    label: str
    goal: str | None = None
    limit: float | None = None
    baseline: str | None = None

    @property
    def key(self) -> str:
        """The record's name for it, e.g. ``step_lorakit_qv_vs_full``."""
        kind = "branch" if self.baseline else {"step_ms": "step", "peak_mem_mb": "mem"}[self.metric]
        return f"{kind}_{self.numerator}_vs_{self.denominator}"

    def ratio(self, results: dict[str, dict]) -> float | None:
        """The ratio, or None when a variant or the metric was not measured (or it divides by 0)."""
        names = [self.numerator, self.denominator] + ([self.baseline] if self.baseline else [])
        values = [results.get(name, {}).get(self.metric) for name in names]
        if not all(values):
            return None
        a, b, base = (*values, 0.0) if self.baseline is None else values
        return (a - base) / (b - base) if b != base else None


def _step(a: str, b: str, label: str, **goal) -> Comparison:
    return Comparison(a, b, "step_ms", label, **goal)


def _mem(a: str, b: str, label: str, **goal) -> Comparison:
    return Comparison(a, b, "peak_mem_mb", label, **goal)


QKV_BF16, PEFT_BF16 = "lorakit_qkv" + FROZEN_BF16, "peft_qkv" + FROZEN_BF16
COMPARISONS = (
    _step(
        "lorakit_qv",
        "full",
        "step: lorakit q,v / full fine-tuning",
        goal="lorakit_step_le_0.75_full",
        limit=0.75,
    ),
    _mem(
        "lorakit_qv",
        "full",
        "peak memory: lorakit q,v / full fine-tuning",
        goal="lorakit_mem_le_0.6_full",
        limit=0.6,
    ),
    _step(
        "lorakit_qkv",
        "peft_qkv",
        "step: q,k,v lorakit / PEFT, both fp32 frozen (each library's standard recipe)",
        goal="lorakit_step_le_0.9_peft",
        limit=0.9,
    ),
    _step(
        QKV_BF16,
        PEFT_BF16,
        "step: q,k,v lorakit / PEFT, both frozen weights in bf16 (same treatment)",
    ),
    _step(QKV_BF16, "peft_qkv", "step: q,k,v lorakit frozen-bf16 / PEFT default"),
    _step(
        "lorakit_qv",
        "peft_qkv",
        "step: lorakit q,v (paper) / PEFT q,k,v (its only option): different targets",
    ),
    _step("lorakit_qv" + FROZEN_BF16, "full", "step: lorakit q,v frozen-bf16 / full fine-tuning"),
    _mem(
        "lorakit_qv" + FROZEN_BF16,
        "full",
        "peak memory: lorakit q,v frozen-bf16 / full fine-tuning",
    ),
    _step("lorakit_qkv", "full", "step: lorakit q,k,v / full fine-tuning"),
    _step("peft_qkv", "full", "step: PEFT q,k,v / full fine-tuning"),
    _mem("lorakit_qkv", "peft_qkv", "peak memory: q,k,v lorakit / PEFT"),
    _mem("peft_qkv", "full", "peak memory: PEFT q,k,v / full fine-tuning"),
    _step(
        "floor",
        "full",
        "step: floor (no weight gradients, a LoRA branch that costs nothing) / full fine-tuning",
    ),
    _step(
        "floor",
        "peft_qkv",
        "step: floor / PEFT q,k,v = the lowest q,k,v lorakit / PEFT that any LoRA could reach",
    ),
    _step(
        "lorakit_qkv",
        "peft_qkv",
        "LoRA branch cost (step - floor): q,k,v lorakit / PEFT, both fp32 frozen",
        baseline="floor",
    ),
    _step(
        QKV_BF16,
        PEFT_BF16,
        "LoRA branch cost (step - floor): q,k,v lorakit / PEFT, both frozen bf16",
        baseline="floor" + FROZEN_BF16,
    ),
)


def comparisons(results: dict[str, dict]) -> list[dict]:
    """Every ratio of :data:`COMPARISONS` with its label, goal and whether it is met.

    ``ratio`` is ``None`` when a variant or the metric was not measured; ``met`` is ``None``
    then, and also for comparisons without a goal.
    """
    rows = []
    for c in COMPARISONS:
        ratio = c.ratio(results)
        met = None if ratio is None or c.limit is None else bool(ratio <= c.limit)
        rows.append(
            {
                "key": c.key,
                "label": c.label,
                "numerator": c.numerator,
                "denominator": c.denominator,
                "baseline": c.baseline,
                "metric": c.metric,
                "ratio": ratio,
                "goal": c.goal,
                "limit": c.limit,
                "met": met,
            }
        )
    return rows


def ratios(results: dict[str, dict]) -> dict:
    """``{key: ratio}`` for every comparison, plus ``goals``: ``{goal name: met}``."""
    rows = comparisons(results)
    out: dict = {row["key"]: row["ratio"] for row in rows}
    out["goals"] = {row["goal"]: row["met"] for row in rows if row["goal"]}
    return out


def add_branch_costs(results: dict[str, dict]) -> None:
    """Set each variant's ``branch_ms``: a LoRA step minus the floor's with the same frozen
    dtype (what the LoRA branch adds to a step); ``None`` for full fine-tuning and the floors."""
    for name, r in results.items():
        frozen = name.endswith(FROZEN_BF16)
        floor = results.get("floor" + (FROZEN_BF16 if frozen else ""))
        lora = name.removesuffix(FROZEN_BF16) not in ("full", "floor")
        r["branch_ms"] = r["step_ms"] - floor["step_ms"] if lora and floor else None


def _fmt(value: float | None, width: int, digits: int = 1) -> str:
    return f"{'-':>{width}s}" if value is None else f"{value:{width}.{digits}f}"


def format_table(mode: str, results: dict[str, dict], rows: list[dict]) -> str:
    """One mode's measurements and comparisons as the text the command prints."""
    lines = [
        f"[{mode}]",
        f"{'method':24s} {'step ms':>8s} {'min':>7s} {'fwd':>6s} {'bwd':>6s} "
        f"{'opt':>6s} {'branch':>6s} {'peak MiB':>9s} {'trainable':>12s}",
    ]
    for name, r in results.items():
        mem = "n/a" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        lines.append(
            f"{name:24s} {r['step_ms']:8.2f} {r['step_ms_min']:7.2f} "
            f"{_fmt(r['forward_ms'], 6)} {_fmt(r['backward_ms'], 6)} "
            f"{_fmt(r['optimizer_ms'], 6)} {_fmt(r.get('branch_ms'), 6, 2)} {mem:>9s} "
            f"{r['trainable_params']:12,}"
        )
    lines.append("")
    verdicts = {True: "met", False: "NOT met", None: "not measured"}
    for row in rows:
        value = "n/a" if row["ratio"] is None else f"{row['ratio']:.3f}"
        goal = "" if row["limit"] is None else f"goal <= {row['limit']}: {verdicts[row['met']]}"
        lines.append(f"{row['label']:88s} {value:>6s}  {goal}")
    return "\n".join(lines)
