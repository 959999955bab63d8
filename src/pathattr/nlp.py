"""Token attributions for Hugging Face ``transformers`` sequence classifiers (extra ``pathattr[nlp]``).

One call takes text (or a tokenizer batch) and returns per-token scores::

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    import pathattr.nlp

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    r = pathattr.nlp.explain_text(model, tok, "a wonderful, moving film", method="integrated_gradients")
    r.tokens[0], r.scores[0]                     # words and their signed scores
    r = pathattr.nlp.explain_text(model, tok, "a dull film", method="ig2",
                                  references=["a wonderful film", "great acting"])   # other-class sentences
    open("tokens.html", "w").write(r.to_html())

Attribution happens at the word-embedding layer (``model.get_input_embeddings()``; any other module with
``layer=``) through `pathattr.layer.LayerAttribution`; a token's score is the sum of its embedding's
attribution. Baseline recipes (``baseline=``): ``"pad"`` (every token but the special ones replaced by
``[PAD]``; Captum's tutorial recipe), ``"mask"`` (``[MASK]``), ``"unk"``, ``"zeros"`` (zero embedding), a token
id or an id tensor. Special tokens (``[CLS]``, ``[SEP]``) keep their own embedding in the baseline
(``keep_special=True``), so their IG score is exactly 0; padding tokens are dropped from the result.
``transformers`` is imported by nobody here: the model and tokenizer are the caller's objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputValidationError
from .layer import LayerAttribution, layer_activations
from .methods.registry import METHODS, get_method_class
from .result import Explanation

__all__ = ["ClassifierForward", "TokenAttribution", "encode", "explain_text", "other_class_references"]

BASELINE_RECIPES = ("pad", "mask", "unk", "zeros")


class ClassifierForward(nn.Module):
    """``(input_ids, attention_mask[, token_type_ids]) -> logits [B, C]`` of an HF sequence classifier.

    Unwraps ``ModelOutput.logits`` (or a tuple's first element); an ``nn.Module`` so the library's model guard
    (eval mode, frozen parameters, hooks restored) reaches the model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        kwargs: dict[str, Any] = {"input_ids": input_ids}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.model(**kwargs)
        logits = getattr(out, "logits", None)
        if logits is None:
            logits = out[0] if isinstance(out, (tuple, list)) else out
        return logits


@dataclass
class TokenAttribution:
    """Per-token scores of a batch of texts.

    Attributes:
        tokens: per example, the tokens without padding (``tokenizer.convert_ids_to_tokens``).
        scores: per example, a 1-D tensor of signed token scores (sum over the embedding dimension).
        special: per example, whether each token is a special token (``[CLS]``, ``[SEP]``, ...).
        input_ids: ``[B, T]`` ids as the model saw them (with padding).
        attention_mask: ``[B, T]``.
        target: the explained class per example ``[B]``.
        target_names: the class names (``model.config.id2label``) when the model has them.
        probabilities: ``softmax`` of the logits at the inputs ``[B, C]``.
        explanation: the method's `pathattr.result.Explanation` (attributions ``[B, T, E]``,
            completeness gap, cost).
        method: the method's registry name.
    """

    tokens: list[list[str]]
    scores: list[Tensor]
    special: list[list[bool]]
    input_ids: Tensor
    attention_mask: Tensor
    target: Tensor
    target_names: list[str] | None
    probabilities: Tensor
    explanation: Explanation
    method: str
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    def words(self, index: int = 0, skip_special: bool = True) -> list[tuple[str, float]]:
        """``(token, score)`` pairs of one example, special tokens skipped by default."""
        return [(t, float(s)) for t, s, sp in zip(self.tokens[index], self.scores[index], self.special[index])
                if not (skip_special and sp)]

    def caption(self, index: int = 0) -> str:
        t = int(self.target[index])
        name = self.target_names[t] if self.target_names else str(t)
        p = float(self.probabilities[index, t])
        e = self.explanation
        gap = "" if e.relative_delta is None else f", completeness gap {float(e.relative_delta[index]):.2g}"
        return f"{self.method}: class {name!r} (p = {p:.2f}){gap}"

    def to_html(self, index: int | None = None, **kwargs: Any) -> str:
        """HTML with coloured tokens (signed, with a legend); all examples unless ``index``. See
        `pathattr.viz.text.tokens_html`."""
        from .viz.text import tokens_html

        rows = range(len(self)) if index is None else [index]
        return tokens_html([self.tokens[i] for i in rows], [self.scores[i] for i in rows],
                           special=[self.special[i] for i in rows], captions=[self.caption(i) for i in rows],
                           **kwargs)

    def plot(self, index: int | None = None, path: Any = None, **kwargs: Any):
        """A matplotlib figure of the coloured tokens (see `pathattr.viz.text.plot_tokens`)."""
        from .viz.text import plot_tokens

        rows = range(len(self)) if index is None else [index]
        return plot_tokens([self.tokens[i] for i in rows], [self.scores[i] for i in rows],
                           special=[self.special[i] for i in rows], captions=[self.caption(i) for i in rows],
                           path=path, **kwargs)


# ----------------------------------------------------------------------------------------------- encoding
def encode(tokenizer: Any, texts: str | Sequence[str] | Mapping[str, Any], max_length: int | None = None,
           device: Any = None) -> dict[str, Tensor]:
    """Tokenize ``texts`` (or pass a tokenizer batch through): ``input_ids``, ``attention_mask``,
    ``special_tokens_mask`` (and ``token_type_ids`` if the tokenizer makes them), all ``[B, T]``."""
    if isinstance(texts, Mapping):
        batch = {k: torch.as_tensor(v) for k, v in texts.items()}
        if "input_ids" not in batch:
            raise InputValidationError("a tokenizer batch must hold `input_ids`.", "texts")
    else:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InputValidationError("`texts` must be a string, a list of strings or a tokenizer batch.", "texts")
        enc = tokenizer(texts, padding=True, truncation=max_length is not None, max_length=max_length,
                        return_tensors="pt", return_special_tokens_mask=True)
        batch = {k: v for k, v in enc.items()}
    ids = batch["input_ids"]
    if ids.ndim == 1:
        batch = {k: v.unsqueeze(0) for k, v in batch.items()}
        ids = batch["input_ids"]
    batch.setdefault("attention_mask", torch.ones_like(ids))
    if "special_tokens_mask" not in batch:
        special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
        batch["special_tokens_mask"] = torch.tensor(
            [[int(i in special_ids) for i in row] for row in ids.tolist()], dtype=torch.long)
    if device is not None:
        batch = {k: v.to(device) for k, v in batch.items()}
    return batch


def _token_id(tokenizer: Any, recipe: str) -> int:
    attr = {"pad": "pad_token_id", "mask": "mask_token_id", "unk": "unk_token_id"}[recipe]
    value = getattr(tokenizer, attr, None)
    if value is None:
        raise InputValidationError(f"the tokenizer has no {attr[:-3]} (baseline {recipe!r}); choose another recipe "
                                   f"from {BASELINE_RECIPES}.", "baseline")
    return int(value)


def _fixed(batch: dict[str, Tensor]) -> Tensor:
    """Positions that baselines and references keep from the input: special tokens and padding."""
    return batch["special_tokens_mask"].bool() | ~batch["attention_mask"].bool()


def baseline_ids(tokenizer: Any, batch: dict[str, Tensor], recipe: str | int, keep_special: bool = True) -> Tensor:
    """Baseline token ids ``[B, T]``: every position replaced by the recipe's token (``"pad"``, ``"mask"``,
    ``"unk"`` or an id) except special tokens (if ``keep_special``) and padding."""
    ids = batch["input_ids"]
    token = recipe if isinstance(recipe, int) else _token_id(tokenizer, recipe)
    keep = _fixed(batch) if keep_special else ~batch["attention_mask"].bool()
    return torch.where(keep, ids, torch.full_like(ids, token))


def _align(tokenizer: Any, texts: Sequence[str], batch: dict[str, Tensor]) -> Tensor:
    """Tokenize reference texts to the batch's length ``T``: ``[B, R, T]`` ids whose special and padding
    positions are the explicand's (the model sees them with the explicand's attention mask)."""
    ids = batch["input_ids"]
    t = ids.shape[1]
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=t, return_tensors="pt")
    refs = enc["input_ids"].to(ids.device)  # [R, T]
    refs = refs.unsqueeze(0).expand(ids.shape[0], -1, -1)
    fixed = _fixed(batch).unsqueeze(1)
    return torch.where(fixed, ids.unsqueeze(1), refs)


@torch.no_grad()
def _logits(forward: ClassifierForward, batch: dict[str, Tensor], chunk: int = 32) -> Tensor:
    from .forward import model_guard

    ids, mask = batch["input_ids"], batch["attention_mask"]
    tt = batch.get("token_type_ids")
    with model_guard(forward, True), torch.no_grad():
        return torch.cat([forward(ids[a:a + chunk], mask[a:a + chunk], None if tt is None else tt[a:a + chunk])
                          for a in range(0, ids.shape[0], chunk)])


def other_class_references(
    model: nn.Module, tokenizer: Any, texts: str | Sequence[str] | Mapping[str, Any], pool: Sequence[str],
    n_references: int = 2, target: Any = None,
) -> list[list[str]]:
    """IG2 references from other-class sentences: for every text, the first ``n_references`` sentences of
    ``pool`` that the model assigns to a class other than the text's target (default: its predicted class)."""
    forward = ClassifierForward(model)
    batch = encode(tokenizer, texts)
    cls = _resolve_target(model, _logits(forward, batch), target)
    pool = list(pool)
    pool_pred = _logits(forward, encode(tokenizer, pool)).argmax(1)
    out = []
    for c in cls.tolist():
        chosen = [s for s, p in zip(pool, pool_pred.tolist()) if p != c][:n_references]
        if not chosen:
            raise InputValidationError(f"no sentence of `pool` is predicted as a class other than {c}.", "pool")
        out.append(chosen)
    return out


def _resolve_target(model: nn.Module, logits: Tensor, target: Any) -> Tensor:
    b = logits.shape[0]
    if target is None:
        return logits.argmax(1)
    label2id = getattr(getattr(model, "config", None), "label2id", None) or {}
    items = target if isinstance(target, (list, tuple, Tensor)) else [target] * b
    out = []
    for t in items:
        if isinstance(t, str):
            if t not in label2id:
                raise InputValidationError(f"`target` {t!r} is not a label of the model ({sorted(label2id)}).",
                                           "target")
            t = label2id[t]
        out.append(int(t))
    if len(out) == 1 and b > 1:
        out = out * b
    if len(out) != b:
        raise InputValidationError(f"`target` has {len(out)} entries; expected one per text ({b}).", "target")
    return torch.tensor(out, device=logits.device)


# ----------------------------------------------------------------------------------------------- explain
def explain_text(
    model: nn.Module,
    tokenizer: Any,
    texts: str | Sequence[str] | Mapping[str, Any],
    method: str | type = "integrated_gradients",
    target: Any = None,
    baseline: str | int | Tensor = "pad",
    keep_special: bool = True,
    references: Sequence[str] | Sequence[Sequence[str]] | Tensor | None = None,
    reference_pool: Sequence[str] | None = None,
    n_references: int = 2,
    layer: nn.Module | None = None,
    representation: Any = None,
    max_length: int | None = 512,
    method_options: Mapping[str, Any] | None = None,
    progress: bool | str | None = "auto",
    **explain_kwargs: Any,
) -> TokenAttribution:
    """Explain an HF sequence classifier's prediction on ``texts`` token by token.

    Args:
        model: an HF sequence classifier (``AutoModelForSequenceClassification``) or any module taking
            ``input_ids=``, ``attention_mask=`` (and ``token_type_ids=``) and returning logits or a
            ``ModelOutput`` with ``logits``.
        tokenizer: the model's tokenizer.
        texts: a string, a list of strings or a tokenizer batch (``input_ids``, ``attention_mask``, ...).
        method: a registry name (``"integrated_gradients"``, ``"guided_integrated_gradients"``, ``"ig2"``, ...;
            short forms ``"ig"``, ``"guided_ig"``, ``"blur_ig"`` accepted) or a method class.
        target: class per text: None (predicted), an int, a label name (``model.config.label2id``) or a list.
        baseline: ``"pad"``, ``"mask"``, ``"unk"``, ``"zeros"`` (zero embedding), a token id, or ids ``[B, T]``
            (methods that take baselines).
        keep_special: special tokens keep their own embedding in the baseline (their IG score is then 0).
        references: IG2 family: other-class sentences (a list shared by all texts, or one list per text),
            or ids ``[R, T]`` / ``[B, R, T]``; None with ``reference_pool`` picks ``n_references`` sentences of
            the pool that the model puts in another class (`other_class_references`).
        layer: the module to attribute (default: the word embeddings, ``model.get_input_embeddings()``).
        representation: IG2's representation (default: the input of ``model.classifier`` when it exists).
        max_length: truncation length for texts.
        method_options: constructor options of the method (``multiply_by_inputs``, ``integrator``, ...).
        progress: ``True``, ``False`` or ``"auto"`` (a bar on a terminal once the call runs for 2 s; see
            `pathattr.layer.LayerAttribution.explain`).
        **explain_kwargs: the method's arguments (``n_steps``, ``internal_batch_size``, ...).

    Returns:
        a `TokenAttribution`.
    """
    method = {"ig": "integrated_gradients", "guided_ig": "guided_integrated_gradients",
              "blur_ig": "blur_integrated_gradients"}.get(method, method) if isinstance(method, str) else method
    cls = get_method_class(method) if isinstance(method, str) else method
    forward = ClassifierForward(model)
    layer = layer if layer is not None else model.get_input_embeddings()
    options = dict(method_options or {})
    needs_refs = METHODS.get(getattr(cls, "name", ""), None) is not None and METHODS[cls.name].needs_references
    if needs_refs:
        if representation is None:
            representation = getattr(model, "classifier", None)
            if representation is None:
                raise InputValidationError(
                    "this model has no `classifier` module; pass IG2's `representation=` (a module of the model).",
                    "representation")
        options["representation"] = representation
    explainer = LayerAttribution(cls, forward, layer, **options)

    device = next(model.parameters()).device
    batch = encode(tokenizer, texts, max_length, device)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    args: tuple = (mask,) if "token_type_ids" not in batch else (mask, batch["token_type_ids"])
    logits = _logits(forward, batch)
    tgt = _resolve_target(model, logits, target)
    kwargs = dict(explain_kwargs)
    extras: dict[str, Any] = {}
    if explainer._takes_baselines:
        if isinstance(baseline, str) and baseline == "zeros":
            acts = layer_activations(forward, layer, ids, args)
            keep = (_fixed(batch) if keep_special else ~mask.bool()).unsqueeze(-1)
            kwargs["layer_baselines"] = torch.where(keep, acts, torch.zeros_like(acts))
        elif isinstance(baseline, Tensor):
            kwargs["baselines"] = baseline.to(ids.device)
        elif isinstance(baseline, (str, int)):
            kwargs["baselines"] = baseline_ids(tokenizer, batch, baseline, keep_special)
        else:
            raise InputValidationError(f"`baseline` must be one of {BASELINE_RECIPES}, an id or a tensor.",
                                       "baseline")
        extras["baseline"] = baseline if not isinstance(baseline, Tensor) else "tensor"
    if explainer._takes_references:
        if references is None:
            if reference_pool is None:
                raise InputValidationError(
                    f"{cls.__name__} needs `references` (other-class sentences) or a `reference_pool`.", "references")
            references = other_class_references(model, tokenizer, batch, reference_pool, n_references, tgt)
        if isinstance(references, Tensor):
            kwargs["references"] = references.to(ids.device)
        else:
            refs = list(references)
            if refs and all(isinstance(r, str) for r in refs):
                kwargs["references"] = _align(tokenizer, refs, batch)
            else:
                if len(refs) != ids.shape[0] or len({len(r) for r in refs}) != 1:
                    raise InputValidationError(
                        "`references` per text must be one list per text, all of the same length.", "references")
                kwargs["references"] = torch.stack(
                    [_align(tokenizer, r, {k: v[i:i + 1] for k, v in batch.items()})[0] for i, r in enumerate(refs)])
            extras["references"] = references
    expl = explainer.explain(ids, target=tgt, additional_forward_args=args, progress=progress, **kwargs)
    attr = expl.attributions if isinstance(expl.attributions, Tensor) else expl.attributions[0]
    per_token = attr.sum(-1) if attr.ndim == 3 else attr.reshape(attr.shape[0], attr.shape[1], -1).sum(-1)
    tokens, scores, special = [], [], []
    for i in range(ids.shape[0]):
        keep = mask[i].bool()
        tokens.append(list(tokenizer.convert_ids_to_tokens(ids[i][keep].tolist())))
        scores.append(per_token[i][keep].detach())
        special.append([bool(s) for s in batch["special_tokens_mask"][i][keep].tolist()])
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    names = [str(id2label[i]) for i in range(logits.shape[1])] if id2label and len(id2label) == logits.shape[1] \
        else None
    return TokenAttribution(tokens, scores, special, ids, mask, tgt, names, logits.softmax(1), expl,
                            getattr(cls, "name", str(method)), extras)

