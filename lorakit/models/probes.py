"""What the pretrained base can do, measured: yardsticks for its perplexity and a copy probe.

* :func:`unigram_perplexity` -- the perplexity of a model that knows only how often each token
  occurs: the bar a network must clear to have learned anything about *order*;
* :func:`text_perplexity` -- the base's perplexity on short texts, each read from its start,
  e.g. restaurant descriptions of the task's test split, which the base never trained on;
* :func:`copy_probe` -- in-context copying: prompts that mention a venue name the base has never
  seen and end where that name comes next; the score is how often greedy (or beam) decoding
  reproduces it. Data-to-text fine-tuning (chapter 6) needs exactly this: the name in the
  meaning representation must reappear in the text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

# Each ends where the name is the natural next words (no trailing space: byte-level BPE puts
# the space in front of the next word, so " Name" is what the model must produce).
COPY_TEMPLATES = (
    "{name} is a {eatType} in the {area} that serves {food} food. "
    "If you want {food} food in the {area}, go to",
    "Last week we had dinner at {name}. The {eatType} serves {food} food. "
    "The next time we are in the {area}, we will go back to",
    "There is a {eatType} called {name} in the {area}. It serves {food} food. "
    "The name of the {eatType} is",
)
FACT_DEFAULTS = {"eatType": "restaurant", "food": "English", "area": "city centre"}


def unigram_perplexity(train_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int) -> float:
    """Perplexity on ``eval_ids`` of the unigram model estimated on ``train_ids``.

    ``p(t) = (count_train(t) + 1) / (N_train + V)`` (add-one smoothing, so a token never seen in
    training keeps a finite probability); the perplexity is ``exp(-mean log p(t))`` over the
    evaluation tokens.

    Parameters
    ----------
    train_ids : (N_train,) token ids the counts come from.
    eval_ids : (N_eval,) token ids the perplexity is measured on.
    vocab_size : V, the number of token ids (every id is < V).
    """
    train_ids, eval_ids = train_ids.reshape(-1).long(), eval_ids.reshape(-1).long()
    if eval_ids.numel() == 0:
        raise ValueError("unigram_perplexity needs at least one evaluation token.")
    both = torch.cat([train_ids, eval_ids])
    if int(both.max()) >= vocab_size or int(both.min()) < 0:
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}); got ids from {int(both.min())} to "
            f"{int(both.max())}. Pass the tokenizer's vocabulary size as vocab_size."
        )
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1.0
    log_p = (counts / counts.sum()).log()
    return math.exp(-log_p[eval_ids].mean().item())


def _padded(rows: list[list[int]], pad: int, left: bool, device) -> tuple[torch.Tensor, ...]:
    """(ids, attention_mask), both (B, T_max), with ``pad`` on the left or on the right."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        where = slice(width - len(row), width) if left else slice(0, len(row))
        ids[r, where], mask[r, where] = torch.tensor(row), 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def text_perplexity(model, tokenizer, texts: Sequence[str], batch_size: int = 32) -> float:
    """Perplexity of ``model`` on ``texts``, each read as its own document.

    Every text becomes ``<|endoftext|> text <|endoftext|>``: the model predicts the text's tokens
    and the closing ``<|endoftext|>`` from the start, as it saw documents in pretraining.
    Token-weighted over all texts; right padding is masked out; bf16 autocast on CUDA (as for
    the held-out perplexity).
    """
    if not texts:
        raise ValueError("text_perplexity needs at least one text.")
    eos, device = tokenizer.eos_token_id, next(model.parameters()).device
    encoded = tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
    limit = model.config.n_positions
    seqs = [[eos, *e.ids[: limit - 2], eos] for e in encoded]
    was_training, nll, count = model.training, 0.0, 0
    model.eval()
    try:
        for i in range(0, len(seqs), batch_size):
            ids, mask = _padded(seqs[i : i + batch_size], eos, left=False, device=device)
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(input_ids=ids, attention_mask=mask).logits
            logp = logits[:, :-1].float().log_softmax(-1)
            picked = logp.gather(-1, ids[:, 1:, None])[..., 0]
            nll -= float((picked * mask[:, 1:]).sum())
            count += int(mask[:, 1:].sum())
    finally:
        model.train(was_training)
    return math.exp(nll / count)


def copy_prompt(name: str, facts: dict[str, str], template: int = 0) -> str:
    """A copy-probe prompt: ``name`` appears once, and the prompt ends where it comes next.

    ``facts``: the venue's ``eatType``, ``food`` and ``area`` (missing ones from
    :data:`FACT_DEFAULTS`); ``template`` indexes :data:`COPY_TEMPLATES`.
    """
    values = {**FACT_DEFAULTS, **{k: v for k, v in facts.items() if k in FACT_DEFAULTS}}
    return COPY_TEMPLATES[template % len(COPY_TEMPLATES)].format(name=name, **values)


def copy_cases(n: int, split: str = "test") -> list[tuple[str, str]]:
    """``n`` probe cases ``(prompt, name)`` from the shipped synthetic set's ``split``.

    Names of its dev and test splits never occur in train, so the base cannot know them: it
    can only copy them from the prompt. Distinct names in file order, templates in turn.
    """
    from lorakit.data import load_e2e, parse_mr

    cases, seen = [], set()
    for record in load_e2e(split, "synthetic"):
        facts = parse_mr(record.mr)
        name = facts.get("name")
        if not name or name in seen:
            continue
        seen.add(name)
        cases.append((copy_prompt(name, facts, len(cases)), name))
        if len(cases) == n:
            break
    return cases


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a rate ``k / n`` (95% for ``z = 1.96``); ``(0, 1)`` for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends, not 1e-18 off
    return lo, 1.0 if k == n else min(1.0, centre + half)


@torch.no_grad()
def copy_probe(
    model,
    tokenizer,
    cases: Sequence[tuple[str, str]],
    num_beams: int = 1,
    copied: Callable[[str, str], bool] | None = None,
    examples: int = 3,
) -> dict:
    """Does the base copy a name from its prompt? The rate, with its n and a 95% interval.

    Parameters
    ----------
    cases : ``(prompt, name)`` pairs (:func:`copy_cases`).
    num_beams : 1 for greedy decoding, more for beam search.
    copied : ``copied(continuation, name)``; default: the continuation, leading spaces
        stripped, starts with the name.
    examples : how many ``{prompt, name, continuation}`` to return.

    Returns
    -------
    dict
        ``n``, ``copied``, ``rate``, ``interval95`` (Wilson), ``decoding``, ``examples``, and
        ``name_logprob`` / ``other_name_logprob``: the mean log-probability per token of the
        name after its prompt, and after the same prompt naming the next case's venue instead
        (how much seeing the name helps, even where decoding misses it).
    """
    if len(cases) < 2:
        raise ValueError(f"copy_probe needs at least 2 cases (got {len(cases)}).")
    copied = copied or (lambda text, name: text.lstrip().startswith(name))
    was_training = model.training
    model.eval()
    try:
        return _copy_probe(model, tokenizer, cases, num_beams, copied, examples)
    finally:
        model.train(was_training)


def _name_logprobs(model, pairs: list[tuple[list[int], list[int]]], pad: int, batch: int):
    """Mean log-probability per token of each name after its prompt (one forward per batch)."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        ids, mask = _padded([p + n for p, n in chunk], pad, left=False, device=device)
        logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        for r, (prompt, name) in enumerate(chunk):
            at = torch.arange(len(prompt) - 1, len(prompt) + len(name) - 1, device=device)
            out.append(logp[r, at, ids[r, at + 1]].mean().item())
    return out


def _copy_probe(model, tokenizer, cases, num_beams, copied, examples, batch: int = 64) -> dict:
    device = next(model.parameters()).device
    eos, n = tokenizer.eos_token_id, len(cases)
    prompts = [tokenizer(p)["input_ids"] for p, _ in cases]
    names = [tokenizer(" " + name)["input_ids"] for _, name in cases]
    outputs: list[str] = []
    for i in range(0, n, batch):  # left padding: every prompt ends where generation starts
        ids, mask = _padded(prompts[i : i + batch], eos, left=True, device=device)
        gen = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            num_beams=num_beams,
            max_new_tokens=max(map(len, names[i : i + batch])) + 2,
            pad_token_id=eos,
        )
        outputs += tokenizer.batch_decode(gen[:, ids.shape[1] :], skip_special_tokens=True)
    k = sum(copied(out, name) for out, (_, name) in zip(outputs, cases))
    own = _name_logprobs(model, list(zip(prompts, names)), eos, batch)
    # the same prompts naming the next case's venue instead: what the name costs unseen
    swapped = [p.replace(name, cases[(i + 1) % n][1]) for i, (p, name) in enumerate(cases)]
    other = _name_logprobs(
        model, [(tokenizer(p)["input_ids"], m) for p, m in zip(swapped, names)], eos, batch
    )
    return {
        "n": n,
        "copied": k,
        "rate": k / n,
        "interval95": list(wilson_interval(k, n)),
        "decoding": "greedy" if num_beams == 1 else f"beam {num_beams}",
        "name_logprob": sum(own) / n,
        "other_name_logprob": sum(other) / n,
        "examples": [
            {"prompt": p, "name": m, "continuation": o}
            for (p, m), o in list(zip(cases, outputs))[:examples]
        ],
    }


def restaurant_texts(n: int, split: str = "test") -> list[str]:
    """``n`` references of the shipped synthetic set's ``split``, evenly spread over the file.

    The offline base may train on the *train* references (unpaired domain text); dev and test
    references, with their unseen venue names, it never sees.
    """
    from lorakit.data import domain_text

    texts = domain_text(split, "synthetic")
    step = max(1, len(texts) // max(n, 1))
    return texts[::step][:n]


def evaluate_base(model, tokenizer, train_ids: torch.Tensor, held_ids: torch.Tensor, spec) -> dict:
    """The probes of a freshly pretrained base, as the pretraining record stores them.

    Returns
    -------
    dict
        ``unigram_heldout_perplexity``; ``restaurant``: the base's and the unigram model's
        perplexity on ``spec.restaurant_texts`` test references (and how many); ``copy_probe``:
        :func:`copy_probe` on ``spec.probe_prompts`` test names, greedy. Without the task data
        (``lorakit.data`` unavailable) the last two are ``None``.
    """
    vocab = len(tokenizer)
    out: dict = {"unigram_heldout_perplexity": unigram_perplexity(train_ids, held_ids, vocab)}
    try:
        texts = restaurant_texts(spec.restaurant_texts)
        cases = copy_cases(spec.probe_prompts)
    except (ImportError, OSError, ValueError):
        return {**out, "restaurant": None, "copy_probe": None}
    from lorakit.models.tokenizer import encode_documents

    out["restaurant"] = {
        "texts": len(texts),
        "split": "test",
        "perplexity": text_perplexity(model, tokenizer, texts),
        "unigram_perplexity": unigram_perplexity(
            train_ids, encode_documents(tokenizer, texts), vocab
        ),
    }
    out["copy_probe"] = copy_probe(model, tokenizer, cases)
    return out
