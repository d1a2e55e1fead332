"""Memory of serving N tasks: one base plus N adapters, against N fine-tuned copies of the model."""

from __future__ import annotations

from collections.abc import Sequence


def serving_bytes(
    base_params: int, adapter_params: int, ns: Sequence[int], bytes_per_value: int = 2
) -> dict[str, list[int]]:
    """Bytes of weights to serve ``n`` tasks, for each ``n`` in ``ns``.

    Parameters
    ----------
    base_params : parameters of the model (GPT-2 medium: 354,823,168 with its tied LM head).
    adapter_params : parameters of one adapter (r = 4 on Wq, Wv of GPT-2 medium: 393,216).
    ns : numbers of tasks.
    bytes_per_value : 2 for fp16/bf16 weights, 4 for fp32.

    Returns
    -------
    ``{"n": [...], "adapters": [...], "copies": [...]}``: one base plus ``n`` adapters
    (``(base + n·adapter)·bytes``), and ``n`` fine-tuned copies (``n·base·bytes``).
    """
    if base_params <= 0 or adapter_params < 0 or bytes_per_value <= 0:
        raise ValueError(
            "base_params and bytes_per_value must be > 0, adapter_params >= 0; got "
            f"{base_params}, {adapter_params}, {bytes_per_value}."
        )
    ns = [int(n) for n in ns]
    if any(n < 0 for n in ns):
        raise ValueError(f"numbers of tasks must be >= 0, got {ns}.")
    return {
        "n": ns,
        "adapters": [(base_params + n * adapter_params) * bytes_per_value for n in ns],
        "copies": [n * base_params * bytes_per_value for n in ns],
    }
