"""Statistics for the benchmark report: bootstrap intervals and paired tests of the IG2 variants.

Design (issue 13, point 5):

- **Intervals.** The mean of a metric over the explicands with a 95 % percentile bootstrap interval. The
  resampling is *paired by example*: within one (family, metric) every method's interval is computed from the
  same resampled explicand ids (one seeded generator per family and metric, :data:`N_BOOT` resamples), so the
  intervals of two methods reflect the same draws of the data.
- **Paired tests.** For every IG2 variant (:func:`ig2_variants`: ``ig2``, ``ig2_paper``, ``ig2_idgi``, any
  method whose name starts with ``ig2``) against every other method, on every metric both have: the two-sided
  Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, exact for small n without ties, normal approximation
  otherwise) of the per-example differences over the explicands both have. All comparisons of one family
  (variants x methods x metrics) form one family of hypotheses and are **Holm-corrected** together
  (:func:`holm`).
- **Win / tie / loss.** *Win* if the Holm-adjusted p-value is below :data:`ALPHA` and the signed ranks favour
  the IG2 variant in the metric's direction (higher or lower is better); *loss* if significant the other way;
  *tie* otherwise (including n < 6, where no two-sided signed-rank p-value can reach 0.05, and identical
  results, whose p-value is 1).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
LEVEL = 0.95
ALPHA = 0.05
#: registry names of IG2 variants tested against every other method (plus any name starting with ``ig2``)
IG2_VARIANTS = ("ig2_paper", "ig2", "ig2_idgi")


def ig2_variants(methods: Sequence[str]) -> list[str]:
    """The IG2 variants among ``methods`` (registry names), in the order given."""
    return [m for m in methods if m in IG2_VARIANTS or m.startswith("ig2")]


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def paired_bootstrap(values: Mapping[str, Mapping[int, float]], n_boot: int = N_BOOT, level: float = LEVEL,
                     seed: object = 0) -> dict[str, tuple[float, float, float, int]]:
    """``{method: (mean, low, high, n)}``: the mean over the method's finite examples and a percentile bootstrap
    interval at ``level``.

    ``values`` maps each method to ``{example id: value}``. One generator seeded by ``seed`` draws ``n_boot``
    resamples of the *union* of example ids, shared by every method (paired by example); a method's resampled
    mean is the mean of its finite values among the drawn ids (draws without any are skipped).
    """
    ids = sorted({i for d in values.values() for i in d})
    pos = {i: k for k, i in enumerate(ids)}
    rng = np.random.default_rng(_seed(seed))
    draws = rng.integers(0, len(ids), size=(n_boot, len(ids))) if ids else np.zeros((0, 0), dtype=np.int64)
    out: dict[str, tuple[float, float, float, int]] = {}
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    for method, d in values.items():
        v = np.full(len(ids), np.nan)
        for i, x in d.items():
            if x is not None and math.isfinite(x):
                v[pos[i]] = x
        ok = np.isfinite(v)
        n = int(ok.sum())
        if n == 0:
            out[method] = (float("nan"), float("nan"), float("nan"), 0)
            continue
        sample = v[draws]
        counts = np.isfinite(sample).sum(axis=1)
        sums = np.nansum(sample, axis=1)
        means = sums[counts > 0] / counts[counts > 0]
        low, high = (float(np.quantile(means, lo_q)), float(np.quantile(means, hi_q))) if means.size else (
            float("nan"), float("nan"))
        out[method] = (float(v[ok].mean()), low, high, n)
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order. NaN stays NaN
    and does not count as a hypothesis."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


@dataclass
class Comparison:
    """One paired test of an IG2 variant against another method on one metric of one family.

    ``difference``: mean of (variant - other) over the paired examples; ``favours``: +1 if the signed ranks
    favour the variant in the metric's direction, -1 against, 0 if none; ``p``: raw two-sided Wilcoxon p-value;
    ``p_holm``: Holm-adjusted within the family; ``outcome``: ``"win"``, ``"tie"`` or ``"loss"``.
    """

    variant: str
    other: str
    metric: str
    n: int
    difference: float
    favours: int
    p: float
    p_holm: float = float("nan")
    outcome: str = "tie"


def wilcoxon_paired(a: Sequence[float], b: Sequence[float], higher_is_better: bool) -> tuple[float, int]:
    """``(p, favours)`` of the two-sided Wilcoxon signed-rank test of ``a - b``.

    ``favours`` is the sign of (sum of positive ranks - sum of negative ranks), flipped when lower is better, so
    +1 means ``a`` is better. All-zero differences give ``(1.0, 0)``; fewer than 2 pairs ``(nan, 0)``.
    """
    from scipy import stats

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size < 2:
        return float("nan"), 0
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)), 1e-300)
    d = np.where(np.abs(d) <= 1e-12 * scale, 0.0, d)  # float round-off is no difference
    nz = d[d != 0]
    if nz.size == 0:
        return 1.0, 0
    ranks = stats.rankdata(np.abs(nz))
    balance = float(ranks[nz > 0].sum() - ranks[nz < 0].sum())
    favours = int(np.sign(balance)) * (1 if higher_is_better else -1)
    p = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return (p if math.isfinite(p) else 1.0), favours


def compare_family(values: Mapping[str, Mapping[str, Mapping[int, float]]], directions: Mapping[str, str],
                   methods: Sequence[str], alpha: float = ALPHA) -> list[Comparison]:
    """Every paired test of a family: each IG2 variant among ``methods`` against every other method, on every
    metric in ``values`` (``{metric: {method: {example: value}}}``) that has a direction; Holm across all of
    them; outcomes at ``alpha``."""
    out: list[Comparison] = []
    for variant in ig2_variants(methods):
        for other in methods:
            if other == variant:
                continue
            for metric, per_method in values.items():
                if metric not in directions or variant not in per_method or other not in per_method:
                    continue
                a_d, b_d = per_method[variant], per_method[other]
                common = sorted(i for i in set(a_d) & set(b_d)
                                if math.isfinite(a_d[i]) and math.isfinite(b_d[i]))
                if len(common) < 2:
                    continue
                a = [a_d[i] for i in common]
                b = [b_d[i] for i in common]
                p, favours = wilcoxon_paired(a, b, directions[metric] == "higher")
                out.append(Comparison(variant, other, metric, len(common), float(np.mean(np.subtract(a, b))),
                                      favours, p))
    for c, q in zip(out, holm([c.p for c in out])):
        c.p_holm = q
        significant = math.isfinite(q) and q < alpha and c.favours != 0
        c.outcome = ("win" if c.favours > 0 else "loss") if significant else "tie"
    return out


def tally(comparisons: Sequence[Comparison]) -> tuple[int, int, int]:
    """``(wins, ties, losses)``."""
    return (sum(c.outcome == "win" for c in comparisons), sum(c.outcome == "tie" for c in comparisons),
            sum(c.outcome == "loss" for c in comparisons))


# ------------------------------------------------------------------------------------------------ report tables
#: primary metric and secondary metrics per family (the IG2 paper's headline: DiffID on images and tabular
#: data, comprehensiveness on text); completeness and cost are added to every family's interval table
PRIMARY_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "synthetic": ("diffid", ("gt_auroc", "gt_ap", "insertion", "deletion")),
    "mnist": ("diffid", ("insertion", "deletion")),
    "imagenet": ("diffid", ("insertion", "deletion")),
    "text": ("comprehensiveness", ("sufficiency", "log_odds")),
    "text_minilm": ("comprehensiveness", ("sufficiency", "log_odds")),
    "wafer": ("diffid", ("gt_auroc", "energy_pointing_game", "insertion", "deletion")),
    "faces": ("diffid", ("insertion", "deletion")),
}
ALWAYS = ("completeness_rel", "stability_spearman", "stability_noise", "cost_passes", "cost_seconds")


def family_metrics(family: str, available: Sequence[str]) -> tuple[str | None, list[str]]:
    """``(primary, secondary + completeness + cost)`` among the ``available`` metrics of ``family`` (unknown
    families: DiffID or comprehensiveness if present, no secondary ones)."""
    primary, secondary = PRIMARY_METRICS.get(family, ("diffid" if "diffid" in available else "comprehensiveness",
                                                      ()))
    rest = [m for m in (*secondary, *ALWAYS) if m in available and m != primary]
    return (primary if primary in available else None), rest


def _ci(mean: float, low: float, high: float) -> str:
    if not math.isfinite(mean):
        return "–"
    digits = 3 if max(abs(mean), abs(low), abs(high)) < 10 else 1
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def interval_table(family: str, values: Mapping[str, Mapping[str, Mapping[int, float]]], methods: Sequence[str],
                   labels: Mapping[str, str], arrows: Mapping[str, str]) -> list[str]:
    """Markdown: methods x (primary, secondary, completeness, cost) as ``mean [95 % bootstrap interval]``."""
    primary, rest = family_metrics(family, list(values))
    cols = ([primary] if primary else []) + rest
    if not cols:
        return []
    cis = {m: paired_bootstrap(values[m], seed=f"{family}|{m}") for m in cols}
    head = ["method"] + [(f"**{m}** (primary)" if m == primary else m) + f" {arrows.get(m, '')}".rstrip()
                         for m in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        cells = [labels.get(method, method)]
        for m in cols:
            r = cis[m].get(method)
            cells.append(_ci(*r[:3]) if r and r[3] else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def outcome_tables(family: str, comparisons: Sequence[Comparison], labels: Mapping[str, str],
                   metric_order: Sequence[str]) -> list[str]:
    """Markdown: per IG2 variant, other methods x metrics with ``win`` / ``tie`` / ``loss`` (Holm-adjusted p)."""
    lines: list[str] = []
    primary, _ = family_metrics(family, list(metric_order))
    for variant in dict.fromkeys(c.variant for c in comparisons):
        mine = [c for c in comparisons if c.variant == variant]
        metrics = [m for m in metric_order if any(c.metric == m for c in mine)]
        metrics.sort(key=lambda m: m != primary)
        w, t, l_ = tally(mine)
        lines += [f"**{labels.get(variant, variant)}** against every other method: {w} wins, {t} ties, {l_} "
                  "losses (cells: outcome for the IG2 variant, Holm-adjusted p)", "",
                  "| vs | " + " | ".join((f"**{m}**" if m == primary else m) for m in metrics) + " | W/T/L |",
                  "|" + "---|" * (len(metrics) + 2)]
        for other in dict.fromkeys(c.other for c in mine):
            row = {c.metric: c for c in mine if c.other == other}
            cells = []
            for m in metrics:
                c = row.get(m)
                if c is None:
                    cells.append("")
                else:
                    word = {"win": "**win**", "loss": "loss", "tie": "tie"}[c.outcome]
                    cells.append(f"{word} ({c.p_holm:.2g})")
            w, t, l_ = tally(list(row.values()))
            lines.append(f"| {labels.get(other, other)} | " + " | ".join(cells) + f" | {w}/{t}/{l_} |")
        lines.append("")
    return lines


def claims_table(results: Mapping[str, Sequence[Comparison]], labels: Mapping[str, str]) -> list[str]:
    """Markdown: for each family and IG2 variant, the outcome on the family's primary metric against each
    other method (the headline of issue 13)."""
    rows: list[tuple[str, str, dict[str, Comparison]]] = []
    others: list[str] = []
    for family, comps in results.items():
        primary, _ = family_metrics(family, [c.metric for c in comps])
        for variant in dict.fromkeys(c.variant for c in comps):
            row = {c.other: c for c in comps if c.variant == variant and c.metric == primary}
            if row:
                rows.append((family, f"{labels.get(variant, variant)} ({primary})", row))
                others += [o for o in row if o not in others]
    if not rows:
        return []
    order = {name: i for i, name in enumerate(labels)}
    others.sort(key=lambda o: order.get(o, len(order)))
    lines = ["| family | IG2 variant (primary metric) | " + " | ".join(labels.get(o, o) for o in others) + " |",
             "|" + "---|" * (len(others) + 2)]
    for family, name, row in rows:
        cells = [(f"{row[o].outcome} (n={row[o].n})" if o in row else "") for o in others]
        lines.append(f"| {family} | {name} | " + " | ".join(cells) + " |")
    return lines + [""]
