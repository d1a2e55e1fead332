"""One frozen base, many LoRA adapters, each row of a batch with its own:
:class:`MultiAdapterModel`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from lorakit.lora import lora_layers

from .factors import Factors, base_shape, factors_of_adapter, factors_of_model, module_kind
from .layers import MultiLoRAEmbedding, MultiLoRALinear, RowRouter, remove_slot

AdapterSource = str | os.PathLike | nn.Module | Mapping[str, Factors]
MULTI_TYPES = (MultiLoRALinear, MultiLoRAEmbedding)


def read_factors(source: AdapterSource) -> dict[str, Factors]:
    """``{module name: Factors}`` from a lorakit adapter folder, a PEFT LoRA folder, a model with
    LoRA layers, or such a dict itself.

    Raises ``ValueError`` for an adapter that also trains biases (it changes the base for every
    row, which a per-row branch cannot express).
    """
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, nn.Module):
        cfg = getattr(source, "_lorakit_config", None)
        if getattr(cfg, "bias", "none") != "none":
            raise ValueError(_BIAS_MSG.format(bias=cfg.bias))
        return factors_of_model(source)
    folder = Path(source)
    from lorakit.checkpoint import CONFIG

    if not (folder / CONFIG).is_file() and (folder / "adapter_config.json").is_file():
        from lorakit.peft_format import read_peft

        factors, settings = read_peft(folder)
        if settings.get("bias", "none") != "none" or settings.get("biases"):
            raise ValueError(_BIAS_MSG.format(bias=settings.get("bias")))
        return factors
    factors, lora = factors_of_adapter(folder)
    if lora.get("bias", "none") != "none":
        raise ValueError(_BIAS_MSG.format(bias=lora["bias"]))
    return factors


_BIAS_MSG = (
    "This adapter also trains biases (bias={bias!r}): it changes the base model itself, "
    "for every row, so it cannot be one row's choice in a mixed batch. Serve adapters "
    "trained with bias='none', or merge this one into its own copy of the base."
)


class MultiAdapterModel(nn.Module):
    """A base model that serves several LoRA adapters at once, one per row of a batch.

    Parameters
    ----------
    model : the frozen base (e.g. a ``GPT2LMHeadModel``) *without* LoRA layers. Its adapted
        modules are wrapped in place by :class:`MultiLoRALinear` / :class:`MultiLoRAEmbedding`.
    adapters : optional ``{name: source}``, added in order with :meth:`add_adapter`.

    Every call says which adapter each row uses: ``adapter_names`` is a list with one entry per
    input row, each an adapter's name or ``None`` (the base), or one name for every row. It is
    given to :meth:`forward` / :meth:`generate`, or for a block of calls with :meth:`rows`, so
    that code which calls ``model.generate`` itself works unchanged::

        served = MultiAdapterModel(base, {"terse": "adapters/terse", "chatty": "adapters/chatty"})
        logits = served(ids, adapter_names=["terse", None, "chatty"]).logits   # ids: (3, T)
        with served.rows(["terse", "chatty"]):
            texts = lorakit.evaluate.generate_texts(served, tok, two_mrs, batch_size=2)

    Each row's output equals that adapter's model alone (up to the order of float sums); a
    beam search (generate with ``num_beams``) gives each input row's beams its adapter.
    Inference only: the stacked factors are buffers, nothing trains.
    """

    def __init__(
        self, model: nn.Module, adapters: Mapping[str, AdapterSource] | None = None
    ) -> None:
        super().__init__()
        if any(True for _ in lora_layers(model)):
            raise ValueError(
                "The model already has LoRA layers; MultiAdapterModel wraps the plain "
                "base. Pass a fresh base, and that model (or its saved folder) as an "
                "adapter: MultiAdapterModel(base, {'name': trained_model})."
            )
        self.model = model
        self.router = RowRouter()
        self.names: list[str] = []  # slot i + 1 holds adapter names[i]
        self._rows_named: int | None = None
        model.register_forward_pre_hook(self._count_rows, with_kwargs=True)
        for name, source in (adapters or {}).items():
            self.add_adapter(name, source)

    def _count_rows(self, module, args, kwargs) -> None:
        x = kwargs.get("input_ids", args[0] if args else None)
        if x is None:
            x = kwargs.get("inputs_embeds")
        self.router.batch = None if x is None else x.shape[0]

    @property
    def config(self):
        """The base model's config (e.g. ``GPT2Config``)."""
        return self.model.config

    def multi_layers(self) -> dict[str, nn.Module]:
        """``{module name: layer}`` of the multi-adapter layers in the base."""
        return {n: m for n, m in self.model.named_modules() if isinstance(m, MULTI_TYPES)}

    def add_adapter(self, name: str, source: AdapterSource) -> None:
        """Load an adapter as ``name``: a folder of :func:`lorakit.save_adapter` or a PEFT LoRA
        folder, a model with lorakit LoRA layers (trained on the same base), or
        ``{module: Factors}``.

        Every module and shape is checked before anything changes; a module the base does not
        have, or of another shape, raises ``ValueError`` and leaves the model as it was.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"An adapter's name is a non-empty string, got {name!r}.")
        if name in self.names:
            raise ValueError(
                f"An adapter named {name!r} is loaded already; remove_adapter({name!r}) "
                "first, or choose another name."
            )
        factors = read_factors(source)
        multi = self.multi_layers()
        new = {}
        for mod_name, f in factors.items():
            if mod_name in multi:
                base = multi[mod_name].base
            else:
                try:
                    base = self.model.get_submodule(mod_name)
                except AttributeError:
                    raise ValueError(
                        f"The adapter {name!r} adapts {mod_name}, which this base does "
                        "not have: it was made for another model."
                    ) from None
                new[mod_name] = base
            try:
                kind, have = module_kind(base), base_shape(base)
            except TypeError:
                raise ValueError(
                    f"The adapter {name!r} adapts {mod_name}, a "
                    f"{type(base).__name__}; LoRA adapts nn.Linear, Conv1D and "
                    "nn.Embedding layers: it was made for another model."
                ) from None
            if (kind == "embedding") != (f.kind == "embedding"):
                raise ValueError(
                    f"{mod_name}: the adapter holds a {f.kind} update, the base has a "
                    f"{type(base).__name__}; it was made for another model."
                )
            if f.shape != have:
                raise ValueError(
                    f"{mod_name}: the adapter {name!r} has an update of shape (d, k) = "
                    f"{f.shape}, the base's layer is {have}; it was made for another "
                    "base (load it into the model it was trained on)."
                )
        for mod_name, base in new.items():  # all checked: now change the model
            cls = MultiLoRAEmbedding if module_kind(base) == "embedding" else MultiLoRALinear
            layer = cls(base, self.router)
            for _ in self.names:  # earlier adapters do not touch this module
                layer.add_slot(None)
            parent, _, child = mod_name.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, child, layer)
        for mod_name, layer in self.multi_layers().items():
            layer.add_slot(factors.get(mod_name))
        self.names.append(name)

    def remove_adapter(self, name: str) -> None:
        """Unload the adapter ``name`` (the layers keep their wrappers, with one slot fewer)."""
        slot = self._slot(name)
        for layer in self.multi_layers().values():
            remove_slot(layer, slot)
        self.names.remove(name)

    def _slot(self, name: str | None) -> int:
        if name is None:
            return 0
        if name not in self.names:
            raise KeyError(f"No adapter named {name!r}; loaded: {self.names} (None = the base).")
        return self.names.index(name) + 1

    def route_of(
        self, adapter_names: str | Sequence[str | None]
    ) -> tuple[None | int | torch.Tensor, int | None]:
        """``(route, rows named)`` for ``adapter_names``; route as :class:`RowRouter` takes it,
        rows ``None`` when one name serves any number of rows."""
        if isinstance(adapter_names, str):
            return self._slot(adapter_names), None
        if not isinstance(adapter_names, Sequence) or not adapter_names:
            raise ValueError(
                f"adapter_names must name one adapter (or None) per input row, or be "
                f"one name for all rows; got {adapter_names!r}."
            )
        slots = [self._slot(n) for n in adapter_names]
        if all(s == slots[0] for s in slots):  # one adapter (or the base) for every row
            return (None if slots[0] == 0 else slots[0]), len(slots)
        return torch.tensor(slots, dtype=torch.long), len(slots)

    @contextmanager
    def rows(self, adapter_names: str | Sequence[str | None]) -> Iterator[None]:
        """Within the block, calls without ``adapter_names`` use these (one per input row)."""
        route, n = self.route_of(adapter_names)
        saved = (self.router.route, self.router.active, self._rows_named)
        self.router.set(route)
        self._rows_named = n
        try:
            yield
        finally:
            self.router.set(saved[0])
            self.router.active, self._rows_named = saved[1], saved[2]

    def _call(self, fn, args, kwargs):
        names = kwargs.pop("adapter_names", None)
        if names is not None:
            with self.rows(names):
                return self._call(fn, args, kwargs)
        if not self.router.active:
            raise ValueError(
                "Say which adapter each row uses: adapter_names=[name or None per "
                "row] (or one name for all), or call inside `with model.rows([...])`."
            )
        x = kwargs.get("input_ids", args[0] if args else None)
        if x is None:
            x = kwargs.get("inputs_embeds")
        want = self._rows_named
        if x is not None and want is not None and x.shape[0] != want:
            raise ValueError(
                f"The batch has {x.shape[0]} rows but {want} adapter names were "
                "given; name one adapter (or None) per row."
            )
        if x is not None:
            self.router.prepare(x.device)
        return fn(*args, **kwargs)

    def forward(self, *args, **kwargs):
        """The base model's forward with each row's adapter; takes ``adapter_names=`` too."""
        return self._call(self.model, args, kwargs)

    @torch.no_grad()
    def generate(self, *args, **kwargs):
        """The base model's ``generate`` with each input row's adapter (``adapter_names=``)."""
        return self._call(self.model.generate, args, kwargs)

    def generate_texts(
        self,
        tokenizer,
        mrs: Sequence[str],
        adapter_names: Sequence[str | None],
        batch_size: int = 16,
        **kwargs,
    ) -> list[str]:
        """:func:`lorakit.evaluate.generate_texts` over a mixed list: MR ``i`` with adapter
        ``adapter_names[i]``, ``batch_size`` MRs per mixed batch. Other keywords pass through."""
        from lorakit.evaluate import generate_texts

        if len(adapter_names) != len(mrs):
            raise ValueError(f"{len(mrs)} MRs but {len(adapter_names)} adapter names.")
        texts: list[str] = []
        for start in range(0, len(mrs), batch_size):
            chunk = slice(start, start + batch_size)
            with self.rows(list(adapter_names[chunk])):
                texts += generate_texts(
                    self, tokenizer, mrs[chunk], batch_size=batch_size, **kwargs
                )
        return texts

    def stacked_bytes(self) -> int:
        """Bytes of every adapter slot stacked in the layers (padding and zero slot included)."""
        return sum(
            b.numel() * b.element_size()
            for layer in self.multi_layers().values()
            for b in (layer.lora_A, layer.lora_B)
        )
