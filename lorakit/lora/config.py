"""The settings of a LoRA adaptation (:class:`LoRAConfig`) and what applying them did
(:class:`LoRAReport`)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from .settings import SETTINGS, check_settings


@dataclass
class LoRAConfig:
    """Settings of a LoRA adaptation (the paper's GPT-2 E2E setting: r=4, alpha=32, q and v,
    dropout 0.1).

    Parameters
    ----------
    r : int
        Rank of every update.
    alpha : float, optional
        The update is scaled by ``alpha / r`` (``alpha / sqrt(r)`` with ``rslora``); default ``r``.
    targets : list of str
        Short names (``q k v o mlp_in mlp_out``), module-name suffixes, or ``"re:<regex>"``.
    dropout : float
        Dropout on the LoRA branch's input.
    init : {"gaussian", "kaiming"}
        How A is initialised; B is always zero.
    rslora : bool
        Rank-stabilised scaling ``alpha / sqrt(r)``.
    bias : {"none", "all", "lora_only"}
        Which biases train along with A and B.
    """

    r: int = 4
    alpha: float | None = None
    targets: list[str] = field(default_factory=lambda: ["q", "v"])
    dropout: float = 0.0
    init: str = "gaussian"
    rslora: bool = False
    bias: str = "none"

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        if (
            not isinstance(self.targets, (list, tuple))
            or not self.targets
            or not all(isinstance(t, str) and t for t in self.targets)
        ):
            raise ValueError(
                f"targets must be a non-empty list of names, got {self.targets!r}; e.g. "
                "['q', 'v'] for GPT-2, module-name suffixes, or 're:<regex>'."
            )
        self.targets = list(self.targets)
        for t in self.targets:
            if t.startswith("re:"):
                try:
                    re.compile(t[3:])
                except re.error as e:
                    raise ValueError(
                        f"target {t!r} is not a valid regular expression ({e}); write "
                        "e.g. 're:.*\\.mlp\\.c_fc'."
                    ) from None
        check_settings(**{name: getattr(self, name) for name in SETTINGS})

    def settings(self) -> tuple:
        """What one adapter shares across its layers: (r, alpha, dropout, init, rslora, bias)."""
        return (self.r, self.alpha or self.r, self.dropout, self.init, self.rslora, self.bias)

    def to_dict(self) -> dict:
        """The settings as a plain dict (what ``save_adapter`` writes into its JSON)."""
        return asdict(self)


@dataclass
class LoRAReport:
    """What :func:`apply_lora` adapted: module names (GPT-2 fused ones as ``name[q,v]``), counts."""

    adapted: list[str]
    shapes: dict[str, tuple[int, int]]
    trainable: int
    total: int
    config: LoRAConfig

    def __str__(self) -> str:
        pct = 100.0 * self.trainable / max(self.total, 1)
        head = (
            f"LoRA r={self.config.r} alpha={self.config.alpha or self.config.r:g}"
            f" on {len(self.adapted)} modules; trainable {self.trainable:,} of "
            f"{self.total:,} parameters ({pct:.3f}%)"
        )
        lines = [head] + [f"  {n}  (d, k) = {self.shapes[n]}" for n in self.adapted[:8]]
        if len(self.adapted) > 8:
            lines.append(f"  ... and {len(self.adapted) - 8} more")
        return "\n".join(lines)

    __repr__ = __str__
