"""The numbers behind ``docs/results/verdict.md``: per family, IG2 (each variant) against IG, Guided IG, Blur IG and
Expected Gradients on the family's primary metric, with completeness and stability.

Reads a results store (``pathattr-bench run --profile paper``) and prints markdown tables; the statistics are the
report's (:mod:`pathattr_bench.stats`: bootstrap intervals, Wilcoxon signed-rank tests Holm-corrected across
every comparison of the family, exactly as in the report's claims table)::

    python -m pathattr_bench.verdict --db docs/results/paper/bench.sqlite
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from .metrics_registry import DIRECTIONS
from .stats import compare_family, family_metrics, paired_bootstrap
from .store import Store

#: the IG2 variants the verdict is about, and the methods the paper compares IG2 with
VARIANTS = ("ig2_paper", "ig2")
BASELINES = ("ig", "guided_ig", "blur_ig", "eg")
LABELS = {"ig2_paper": "IG2 (paper preset)", "ig2": "IG2 (pathattr default)", "ig": "IG", "guided_ig": "Guided IG",
          "blur_ig": "Blur IG", "eg": "EG", "gradpath_ig": "GradPath-IG", "gradcf_ig": "GradCF-IG",
          "ig2_idgi": "IG2 + IDGI", "ig_refs": "IG (IG2's references)", "smoothgrad": "SmoothGrad", "agi": "AGI",
          "mfaba": "MFABA"}


def family_values(store: Store, profile: str = "paper") -> dict[str, dict[str, dict[str, dict[int, float]]]]:
    """``{family: {metric: {method: {example: value}}}}`` of one profile (the newest series of each method)."""
    rows = store.query("SELECT r.family, r.method, r.hp_hash, r.metric, r.example, r.value, r.created "
                       "FROM results r JOIN hyperparameters h ON r.hp_hash = h.hp_hash AND r.method = h.method "
                       "WHERE h.profile = ?", (profile,))
    newest: dict[tuple[str, str], tuple[str, str]] = {}
    for fam, method, key, _, _, _, created in rows:
        if (fam, method) not in newest or str(created) > newest[(fam, method)][1]:
            newest[(fam, method)] = (key, str(created))
    out: dict[str, dict[str, dict[str, dict[int, float]]]] = defaultdict(lambda: defaultdict(dict))
    for fam, method, key, metric, example, value, _ in rows:
        if newest[(fam, method)][0] == key and value is not None:
            out[fam][metric].setdefault(method, {})[int(example)] = float(value)
    return out


def _ci(family: str, values: dict[str, dict[str, dict[int, float]]], metric: str) -> dict[str, str]:
    present = values.get(metric, {})
    if not present:
        return {}
    out = {}
    for m, (mean, low, high, n) in paired_bootstrap(present, seed=f"{family}|{metric}").items():  # as the report
        out[m] = f"{mean:.3f} [{low:.3f}, {high:.3f}] (n={n})"
    return out


def _median(values: dict[str, dict[str, dict[int, float]]], metric: str, method: str) -> str:
    v = [x for x in values.get(metric, {}).get(method, {}).values() if math.isfinite(x)]
    return f"{statistics.median(v):.3g}" if v else "-"


def _mean(values: dict[str, dict[str, dict[int, float]]], metric: str, method: str) -> str:
    v = [x for x in values.get(metric, {}).get(method, {}).values() if math.isfinite(x)]
    return f"{statistics.fmean(v):.3f} (n={len(v)})" if v else "-"


def verdict_tables(values: dict[str, dict[str, dict[str, dict[int, float]]]]) -> list[str]:
    """Markdown: per family, the primary metric's intervals and the IG2 variants' outcomes against the paper's
    comparison methods, then completeness and stability of the same methods."""
    head_to_head = ["", "| family (primary metric) | IG2 default vs IG2 paper preset | mean difference (default - "
                    "preset) |", "|---|---|---|"]
    lines = ["| family (primary metric) | method | primary metric mean [95 % CI] | vs IG | vs Guided IG | vs Blur IG | "
             "vs EG | median relative completeness gap | stability_noise (Pearson) | model passes per explicand |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for fam, vals in values.items():
        primary, _ = family_metrics(fam, list(vals))
        if primary is None:
            continue
        methods = sorted({m for per in vals.values() for m in per})
        comparisons = compare_family(vals, dict(DIRECTIONS), methods)
        outcome = {(c.variant, c.other): f"{c.outcome} (p={c.p_holm:.2g})" for c in comparisons
                   if c.metric == primary}
        cis = _ci(fam, vals, primary)
        for c in comparisons:
            if c.metric == primary and c.variant == "ig2" and c.other == "ig2_paper":
                head_to_head.append(f"| {fam} ({primary}) | {c.outcome} (p={c.p_holm:.2g}, n={c.n}) | "
                                    f"{c.difference:+.3f} |")
        for m in (*VARIANTS, *BASELINES):
            if m not in cis:
                continue
            vs = [outcome.get((m, b), "") if m in VARIANTS else "" for b in BASELINES]
            lines.append(f"| {fam} ({primary}) | {LABELS.get(m, m)} | {cis[m]} | {' | '.join(vs)} | "
                         f"{_median(vals, 'completeness_rel', m)} | {_mean(vals, 'stability_noise', m)} | "
                         f"{_median(vals, 'cost_passes', m)} |")
    return lines + head_to_head


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="docs/results/paper/bench.sqlite")
    ap.add_argument("--profile", default="paper")
    args = ap.parse_args(argv)
    store: Any = Store(args.db, readonly=True)
    print("\n".join(verdict_tables(family_values(store, args.profile))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
