"""Token-level faithfulness for text models: comprehensiveness, sufficiency and log-odds at the top-k% tokens.

References:
    DeYoung et al. "ERASER: A Benchmark to Evaluate Rationalized NLP Models." ACL 2020 (comprehensiveness,
    sufficiency).
    Shrikumar, Greenside, Kundaje. "Learning Important Features Through Propagating Activation Differences."
    ICML 2017 (log-odds); protocol of Sanyal & Ren, "Discretized Integrated Gradients for Explaining Language
    Models", EMNLP 2021 (code ``INK-USC/DIG``, ``metrics.py``).

Conventions (DIG protocol): ``y`` is the class predicted on the original input (or the given ``target``), ``p``
the softmax probability, and ``K = floor(n * k)`` of the ``n`` *candidate* tokens with the largest attribution
are selected -- candidates are the real tokens (``attention_mask``) that are not special tokens
(``special_tokens_mask``, e.g. [CLS]/[SEP]); padding and special tokens are never selected. Ties: lower position
first.

* ``log_odds``: ``log p_y(x with the K tokens replaced by baseline) - log p_y(x)`` (**lower is better**).
* ``comprehensiveness``: ``p_y(x) - p_y(x without the K tokens)`` (**higher is better**).
* ``sufficiency``: ``p_y(x) - p_y(only the K tokens, plus special tokens)`` (**lower is better**; 0 when
  ``K = 0``, as DIG).

"Without" deletes the tokens (``mode="delete"``, the default): the remaining tokens move to the front in order,
the freed tail is filled with ``pad`` and gets attention-mask 0, so positions are re-used from the start as in
DIG. ``mode="replace"`` instead overwrites them with ``baseline`` in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import InputValidationError, check_finite
from ..forward import ModelFunction, TargetType
from ._common import (
    DEPRECATED,
    Metric,
    MetricResult,
    as_mask,
    choice,
    chunk_size_for,
    chunks,
    describe,
    guard,
    internal_batch_size_alias,
    resolve_target_chunked,
    to_tensor,
)


@dataclass(kw_only=True)
class TokenResult(MetricResult):
    """Result of :func:`comprehensiveness`, :func:`sufficiency` and :func:`log_odds`.

    Attributes:
        scores: mean over ``topk`` of the per-k scores, per example ``[B]``.
        per_k: score for each ``k`` ``[B, n_k]``.
        topk: the fractions ``k``.
        n_selected: number of selected tokens ``K`` ``[B, n_k]``.
        target: the class scored per example ``[B]``.
    """

    per_k: Tensor
    topk: tuple[float, ...]
    n_selected: Tensor
    target: Tensor


def _token_scores(attributions: Any, b: int, length: int) -> Tensor:
    a = to_tensor(attributions, "attributions")
    if not a.is_floating_point():
        a = a.to(torch.float64)
    if a.ndim < 2 or a.shape[0] != b or a.shape[1] != length:
        raise InputValidationError(
            f"`attributions` must be [B, L] token scores or [B, L, ...] (summed per token) with B={b}, L={length}; "
            f"got {tuple(a.shape)}.",
            "attributions",
        )
    check_finite(a, "attributions")
    return a.reshape(b, length, -1).sum(2).to(torch.float64)


def _fill_value(value: Any, x: Tensor, argument: str) -> Tensor:
    """A replacement (token id or embedding) broadcast to ``x`` ``[B, L, *D]``."""
    t = torch.as_tensor(value, device=x.device)
    if x.is_floating_point():
        t = t.to(x.dtype)
    elif t.is_floating_point():
        raise InputValidationError(f"`{argument}` must be an integer token id for token-id inputs.", argument)
    else:
        t = t.to(x.dtype)
    try:
        return torch.broadcast_to(t, x.shape)
    except RuntimeError:
        raise InputValidationError(
            f"`{argument}` of shape {tuple(t.shape)} does not broadcast to the inputs {tuple(x.shape)} (give a "
            "token id, an embedding [D] or a tensor [B, L, D]).",
            argument,
        ) from None


def _token_metric(
    kind: str,
    forward_func: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    target: TargetType,
    topk: float | Sequence[float],
    attention_mask: Any,
    special_tokens_mask: Any,
    baseline: Any,
    pad: Any,
    mode: str,
    additional_forward_args: Any,
    batch_size: int | None,
    module: Any = None,
) -> TokenResult:
    x = to_tensor(inputs, "inputs")
    if x.ndim < 2:
        raise InputValidationError(f"`inputs` must be [B, L] token ids or [B, L, ...] embeddings, got "
                                   f"{tuple(x.shape)}.", "inputs")
    if x.is_floating_point():
        check_finite(x, "inputs")
    b, length = x.shape[:2]
    if b == 0 or length == 0:
        raise InputValidationError("`inputs` is empty.", "inputs")
    scores = _token_scores(attributions, b, length).to(x.device)
    if attention_mask is None:
        att = torch.ones(b, length, dtype=torch.bool, device=x.device)
        att_given = None
    else:
        att_given = to_tensor(attention_mask, "attention_mask").to(x.device)
        if tuple(att_given.shape) != (b, length):
            raise InputValidationError(f"`attention_mask` must be [B, L] = {(b, length)}, got "
                                       f"{tuple(att_given.shape)}.", "attention_mask")
        att = att_given != 0
    if special_tokens_mask is None:
        special = torch.zeros(b, length, dtype=torch.bool, device=x.device)
    else:
        special = as_mask(special_tokens_mask, "special_tokens_mask").to(x.device)
        if tuple(special.shape) != (b, length):
            raise InputValidationError(f"`special_tokens_mask` must be [B, L] = {(b, length)}.",
                                       "special_tokens_mask")
    ks = (topk,) if isinstance(topk, (int, float)) else tuple(topk)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 <= k <= 1 for k in ks):
        raise InputValidationError(f"`topk` must be a fraction in [0, 1] or a sequence of them, got {topk!r}.",
                                   "topk")
    ks = tuple(float(k) for k in ks)
    mode = choice(mode, ("delete", "replace"), "mode")
    if kind == "log_odds":
        mode = "replace"
    base = _fill_value(baseline, x, "baseline")
    pad_t = base if pad is None else _fill_value(pad, x, "pad")

    candidate = att & ~special
    n_cand = candidate.sum(1)
    ranked = torch.where(candidate, scores, torch.full_like(scores, -math.inf))
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(length, device=x.device).expand(b, length))
    n_sel = torch.stack([torch.floor(n_cand.to(torch.float64) * k + 1e-9).long() for k in ks], 1)  # [B, n_k]
    n_k = len(ks)
    n_rows = n_k * b
    trailing = (1,) * (x.ndim - 2)

    def make_rows(lo: int, hi: int) -> tuple[tuple[Tensor, ...], Tensor]:
        r = torch.arange(lo, hi, device=x.device)
        kk, ex = r // b, r % b
        selected = rank[ex] < n_sel[ex, kk].unsqueeze(1)  # [R, L]; only candidates can rank < n_cand
        xr, att_r = x[ex], att[ex]
        if kind == "log_odds" or mode == "replace":
            removed = selected if kind != "sufficiency" else candidate[ex] & ~selected
            rows = torch.where(removed.view(*removed.shape, *trailing), base[ex], xr)
            new_att = att_r
        else:
            keep = att_r & ~selected if kind == "comprehensiveness" else att_r & (selected | special[ex])
            perm = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
            gathered = xr.gather(1, perm.view(*perm.shape, *trailing).expand_as(xr))
            new_att = torch.arange(length, device=x.device).unsqueeze(0) < keep.sum(1, keepdim=True)
            rows = torch.where(new_att.view(*new_att.shape, *trailing), gathered, pad_t[ex])
        if att_given is None:
            return (rows,), ex
        return (rows, new_att.to(att_given.dtype)), ex

    model = ModelFunction(forward_func, b, additional_forward_args)
    row_numel = int(x[0].numel())
    chunk = chunk_size_for(batch_size, n_rows, row_numel)
    originals = (x,) if att_given is None else (x, att_given)
    chunk0 = chunk_size_for(batch_size, b, row_numel)
    all_index = torch.arange(b, device=x.device)
    with guard(forward_func, module), torch.no_grad():
        resolve_target_chunked(model, target, originals, chunk0)
        if not isinstance(model.target, Tensor):
            raise InputValidationError("token metrics need class scores [B, C] and a class-index target.",
                                       "forward_func")
        lp0 = torch.cat([
            _log_prob(model, model.forward(tuple(t[lo:hi] for t in originals), all_index[lo:hi]), all_index[lo:hi])
            for lo, hi in chunks(b, chunk0)
        ])
        lps = []
        for lo, hi in chunks(n_rows, chunk):
            rows, ex = make_rows(lo, hi)
            lps.append(_log_prob(model, model.forward(rows, ex), ex))
    lp = torch.cat(lps).view(n_k, b).t()  # [B, n_k]
    if kind == "log_odds":
        per_k = lp - lp0.unsqueeze(1)
        direction = "lower"
    else:
        per_k = lp0.exp().unsqueeze(1) - lp.exp()
        direction = "higher" if kind == "comprehensiveness" else "lower"
        if kind == "sufficiency":
            per_k = torch.where(n_sel == 0, torch.zeros_like(per_k), per_k)
    hyper = {
        "topk": ks,
        "selection": "top floor(n * k) of the n candidate tokens (attention_mask & ~special_tokens_mask)",
        "mode": mode,
        "baseline": describe(baseline),
        "pad": describe(pad) if pad is not None else "baseline",
        "target": describe(target),
        "attention_mask": att_given is not None,
        "internal_batch_size": batch_size,
        "probability": "softmax over classes",
    }
    return TokenResult(name=kind, scores=per_k.mean(1), direction=direction, hyperparameters=hyper, per_k=per_k,
                       topk=ks, n_selected=n_sel, target=model.target)


def _log_prob(model: ModelFunction, raw: Any, example_index: Tensor | None) -> Tensor:
    if not isinstance(raw, Tensor) or raw.ndim != 2 or raw.shape[1] < 2:
        raise InputValidationError("`forward_func` must return class scores [n, C] with C >= 2.", "forward_func")
    logp = torch.log_softmax(raw.to(torch.float64), dim=1)
    t = model.target if example_index is None else model.target[example_index]
    out = logp.gather(1, t.view(-1, 1)).squeeze(1)
    check_finite(out, "forward_func", "outputs")
    return out


_TOKEN_ARGS = """
    Args:
        forward_func: model mapping ``inputs`` rows (and, if ``attention_mask`` is given, the mask rows as the
            second argument) plus ``additional_forward_args`` to class logits ``[n, C]``.
        inputs: token ids ``[B, L]`` (long) or embeddings ``[B, L, ...]`` (float), tensor or array.
        attributions: token scores ``[B, L]`` or per-element attributions ``[B, L, ...]`` (summed per token).
        target: class per example; None: the class predicted on ``inputs``.
        topk: fraction ``k`` of the candidate tokens (DIG: 0.2), or a sequence of fractions (scores are then
            averaged over them, ERASER's AOPC style; each is kept in ``per_k``).
        attention_mask: ``[B, L]`` (1 = real token, 0 = padding); passed to ``forward_func``. Without it every
            position is a real token and the model gets no mask.
        special_tokens_mask: ``[B, L]`` bool, True for tokens never selected and always kept ([CLS], [SEP]).
        baseline: replacement token id or embedding (``[D]`` or ``[B, L, D]``), e.g. the [PAD] or [MASK]
            embedding; state which in reports.
        pad: filler of the freed tail in ``mode="delete"`` (default: ``baseline``).
        mode: ``"delete"`` (shorten the sequence) or ``"replace"`` (overwrite in place with ``baseline``).
        additional_forward_args: extra arguments for ``forward_func`` (per-example tensors have dim 0 = B).
        internal_batch_size: maximum rows per forward call (``batch_size``: its deprecated alias).
        model: the ``nn.Module`` (or modules) ``forward_func`` uses, when it cannot be found from it (e.g. a
            lambda around the model); put in eval mode and restored.
"""


def comprehensiveness(
    forward_func: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    target: TargetType = None,
    *,
    topk: float | Sequence[float] = 0.2,
    attention_mask: Any = None,
    special_tokens_mask: Any = None,
    baseline: Any = 0,
    pad: Any = None,
    mode: str = "delete",
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    model: Any = None,
    batch_size: Any = DEPRECATED,
) -> TokenResult:
    """Comprehensiveness (ERASER): ``p_y(x) - p_y(x without the top-K tokens)``. **Higher is better.**"""
    batch_size = internal_batch_size_alias("comprehensiveness", internal_batch_size, batch_size)
    return _token_metric("comprehensiveness", forward_func, inputs, attributions, target, topk, attention_mask,
                         special_tokens_mask, baseline, pad, mode, additional_forward_args, batch_size,
                         model)


def sufficiency(
    forward_func: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    target: TargetType = None,
    *,
    topk: float | Sequence[float] = 0.2,
    attention_mask: Any = None,
    special_tokens_mask: Any = None,
    baseline: Any = 0,
    pad: Any = None,
    mode: str = "delete",
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    model: Any = None,
    batch_size: Any = DEPRECATED,
) -> TokenResult:
    """Sufficiency (ERASER): ``p_y(x) - p_y(only the top-K tokens and the special tokens)``; 0 when ``K = 0``.
    **Lower is better.**"""
    batch_size = internal_batch_size_alias("sufficiency", internal_batch_size, batch_size)
    return _token_metric("sufficiency", forward_func, inputs, attributions, target, topk, attention_mask,
                         special_tokens_mask, baseline, pad, mode, additional_forward_args, batch_size,
                         model)


def log_odds(
    forward_func: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    target: TargetType = None,
    *,
    topk: float | Sequence[float] = 0.2,
    attention_mask: Any = None,
    special_tokens_mask: Any = None,
    baseline: Any = 0,
    additional_forward_args: Any = None,
    internal_batch_size: int | None = None,
    model: Any = None,
    batch_size: Any = DEPRECATED,
) -> TokenResult:
    """Log-odds (DIG protocol): ``log p_y(x with the top-K tokens replaced by baseline) - log p_y(x)``.
    **Lower is better.** (``mode``/``pad`` do not apply: tokens are always replaced in place.)"""
    batch_size = internal_batch_size_alias("log_odds", internal_batch_size, batch_size)
    return _token_metric("log_odds", forward_func, inputs, attributions, target, topk, attention_mask,
                         special_tokens_mask, baseline, None, "replace", additional_forward_args, batch_size,
                         model)


comprehensiveness.__doc__ = (comprehensiveness.__doc__ or "") + _TOKEN_ARGS
sufficiency.__doc__ = (sufficiency.__doc__ or "") + _TOKEN_ARGS
log_odds.__doc__ = (log_odds.__doc__ or "") + _TOKEN_ARGS


class Comprehensiveness(Metric):
    """Class form of :func:`comprehensiveness`. Higher is better."""

    function = staticmethod(comprehensiveness)
    higher_is_better = True


class Sufficiency(Metric):
    """Class form of :func:`sufficiency`. Lower is better."""

    function = staticmethod(sufficiency)
    higher_is_better = False


class LogOdds(Metric):
    """Class form of :func:`log_odds`. Lower is better."""

    function = staticmethod(log_odds)
    higher_is_better = False
