"""``pathattr-bench report``: markdown tables and figures from the results store into ``docs/results/``.

Per family and profile: the model and its held-out accuracy (with the stated bar), the data source, one table
of methods x metrics with ``mean +- standard error`` over the explicands (and ``n``), the attribution cost, an
example heatmap per method (images; bar charts for tabular data, token scores for text) and the mean
insertion / deletion curves. The header states the hardware, library versions, time taken and counts.

Statistics (:mod:`pathattr_bench.stats`): per family, the primary and secondary metrics, completeness and cost
as mean with a 95 % bootstrap interval (seeded, paired by example), and the Wilcoxon signed-rank tests of
every IG2 variant against every other method on every metric, Holm-corrected within the family, as
win / tie / loss tables; a claims table across families on each family's primary metric.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .metrics_registry import COST_METRICS, DIRECTIONS
from .store import Store, from_blob

ARROWS = {"higher": "↑", "lower": "↓"}


def mean_se(values: list[float]) -> tuple[float, float, int]:
    """Mean, standard error of the mean (sample std / sqrt(n); 0 for n = 1) and n of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    n = int(v.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return float(v.mean()), se, n


def _fmt(mean: float, se: float) -> str:
    if not math.isfinite(mean):
        return "–"
    scale = max(abs(mean), se)
    digits = 3 if scale < 10 else 1
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def _labels() -> dict[str, str]:
    from .methods_registry import METHODS

    return {k: v.label for k, v in METHODS.items()}


def _series(store: Store) -> dict[tuple[str, str, str], list[tuple[str, str]]]:
    """(family, model, profile) -> [(method, hp_hash)] in registry order."""
    rows = store.query("SELECT DISTINCT r.family, r.model, r.method, r.hp_hash, h.profile FROM results r "
                       "JOIN hyperparameters h ON h.hp_hash = r.hp_hash")
    from .methods_registry import METHODS

    order = {m: i for i, m in enumerate(METHODS)}
    out: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    for fam, model, method, key, profile in rows:
        out[(fam, model, profile)].append((method, key))
    for v in out.values():
        v.sort(key=lambda mk: (order.get(mk[0], 99), mk[1]))
    return out


def _save(fig: Any, path: Path, side: int) -> None:
    """Save a figure; large images at a lower resolution so that the committed PNGs stay small."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60 if side > 64 else 110)
    plt.close(fig)


def _plot_heatmaps(store: Store, fam: str, model: str, series: list[tuple[str, str]], example: int,
                   path: Path) -> bool:
    import torch

    rows = store.query("SELECT data FROM artifacts WHERE family = ? AND model = ? AND method = '' AND example = ? "
                       "AND kind = 'input'", (fam, model, example))
    if not rows:
        return False
    x = torch.from_numpy(from_blob(rows[0][0])).float()
    attrs: dict[str, Any] = {}
    labels = _labels()
    for method, key in series:
        r = store.query("SELECT data FROM artifacts WHERE family = ? AND model = ? AND method = ? AND hp_hash = ? "
                        "AND example = ? AND kind = 'attribution'", (fam, model, method, key, example))
        if r:
            attrs[labels.get(method, method)] = torch.from_numpy(from_blob(r[0][0])).float()
    if not attrs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x.ndim == 3 and x.shape[0] in (1, 3):
        from pathattr.viz import plot_explanations

        image = x.repeat(3, 1, 1) if x.shape[0] == 1 else x
        image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
        _save(plot_explanations(image, attrs, title=f"{fam}: example {example}"), path, x.shape[-1])
        return True
    if x.ndim == 3 and x.shape[0] not in (1, 3):  # e.g. one-hot maps with another channel count
        from pathattr.viz import plot_explanations

        image = x.float().mean(0, keepdim=True).repeat(3, 1, 1)
        _save(plot_explanations(image, attrs, title=f"{fam}: example {example}"), path, x.shape[-1])
        return True
    # tabular [d] or tokens [L, E]: bars of the (per-token summed) attribution
    n = len(attrs)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.3 * n + 0.6), sharex=True, squeeze=False)
    for ax, (name, a) in zip(axes[:, 0], attrs.items()):
        vals = a.sum(-1) if a.ndim == 2 else a.reshape(-1)
        vals = vals.double().numpy()
        ax.bar(np.arange(vals.size), vals, color=np.where(vals >= 0, "#c0392b", "#2e86c1"))
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[-1, 0].set_xlabel("feature" if x.ndim == 1 else "token")
    fig.suptitle(f"{fam}: example {example} attributions", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_curves(store: Store, fam: str, model: str, series: list[tuple[str, str]], kind: str, path: Path) -> bool:
    from pathattr.viz import plot_curves

    labels = _labels()
    curves = {}
    for method, key in series:
        rows = store.query("SELECT data FROM artifacts WHERE family = ? AND model = ? AND method = ? AND hp_hash = ? "
                           "AND kind = ?", (fam, model, method, key, f"curve:{kind}"))
        if rows:
            curves[labels.get(method, method)] = np.mean([from_blob(r[0]) for r in rows], axis=0)
    if not curves:
        return False
    plot_curves(curves, xlabel="fraction of units changed", ylabel="target probability",
                title=f"{fam}: mean {kind} curve", path=path)
    return True


def write_report(db: str, out_dir: str = "docs/results", figures: bool = True, notes: list[str] | None = None) -> Path:
    """Write ``<out_dir>/README.md`` (and ``figures/*.png``) from the store at ``db``; returns the markdown path.
    ``notes`` are printed as bullet points under the environment (e.g. how loaded the machine was)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    store = Store(db, readonly=True)
    try:
        lines = _header(store)
        if notes:
            lines += [f"- note: {n}" for n in notes] + [""]
        from .runner import FAMILIES

        rank = {f: i for i, f in enumerate(FAMILIES)}
        items = sorted(_series(store).items(), key=lambda kv: (rank.get(kv[0][0], 99), kv[0]))
        claims: dict[str, list] = {}
        for (fam, model, profile), series in items:
            lines += _family_section(store, fam, model, profile, series, out, figures)
            stat_lines, comparisons = _stats_section(store, fam, model, profile, series)
            lines += stat_lines
            if comparisons:
                claims[f"{fam} ({profile})"] = comparisons
        if claims:
            from .stats import claims_table

            at = next((i for i, line in enumerate(lines) if line.startswith("## ") and "Environment" not in line),
                      len(lines))
            lines[at:at] = ["## Claims: IG2 against each method on the primary metric", "",
                            "Two-sided Wilcoxon signed-rank tests over the paired explicands, Holm-corrected across "
                            "all comparisons of a family (every IG2 variant x every other method x every metric); "
                            "win / loss = adjusted p < 0.05 in favour of / against the IG2 variant, tie otherwise. "
                            "Per-metric tables are in each family's statistics section.", "",
                            *claims_table(claims, _labels())]
    finally:
        store.close()
    lines.append(f"_Report written in {time.perf_counter() - started:.1f} s from `{db}`._")
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _header(store: Store) -> list[str]:
    runs = store.query("SELECT run_id, command, started, finished, status, hardware, versions, computed, skipped, "
                       "rows, seconds FROM runs ORDER BY run_id")
    lines = ["# Benchmark results", "",
             "Generated by `pathattr-bench report` from the SQLite store written by `pathattr-bench run`. Every cell "
             "is `mean ± standard error` over the explicands (n per row); ↑ higher is better, ↓ lower is better. "
             "Methods that need references all get the same per-example references (the family's recipe). "
             "Reproduce with `pathattr-bench run --suite paper --profile P --db FILE` then "
             "`pathattr-bench report --db FILE`, where P is the profile named in each family's heading (`quick`: "
             "the CI size; `full`; `paper`: 50 class-balanced explicands per family at the IG2 paper's settings, "
             "run in resumable pieces with `--family`, `--methods`, `--metrics` and `--limit`); a run resumes where "
             "it stopped. Families whose real dataset is not installable offline run on the "
             "substitute named in their `data` line.", ""]
    if runs:
        hw = json.loads(runs[-1][5] or "{}")
        ver = json.loads(runs[-1][6] or "{}")
        total = sum(r[10] or 0.0 for r in runs)
        lines += [
            "## Environment and runs", "",
            f"- hardware: {hw.get('cpu_model', hw.get('processor', '?'))}, {hw.get('cpu_count')} logical CPUs, "
            f"torch threads {hw.get('torch_threads')}, CUDA {hw.get('cuda')}; {hw.get('platform', '')}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()),
            f"- runs: {len(runs)} ({sum(1 for r in runs if r[4] == 'finished')} finished, "
            f"{sum(1 for r in runs if r[4] == 'interrupted')} interrupted), {total:.1f} s in total, "
            f"{sum(r[7] or 0 for r in runs)} (example, method) attributions computed, "
            f"{store.count('results')} result rows",
            "",
            "Wall time is elapsed time (inflated when the machine is shared); CPU time is this process's user + "
            "system time (torch threads included).",
            "",
            "| family | model | profile | last run wall time [s] | of which loading [s] | CPU time [s] | computed "
            "| skipped |",
            "|---|---|---|---|---|---|---|---|",
        ]
        fr = store.query("SELECT family, model, profile, seconds, load_seconds, computed, skipped, cpu_seconds FROM "
                         "family_runs WHERE computed > 0 ORDER BY finished")
        last: dict[tuple, tuple] = {}
        for r in fr:
            last[(r[0], r[1], r[2])] = r
        for r in last.values():
            cpu = f"{r[7]:.1f}" if r[7] is not None else "–"
            lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4] or 0:.1f} | {cpu} | {r[5]} | {r[6]} |")
        lines.append("")
    return lines


def _stats_section(store: Store, fam: str, model: str, profile: str,
                   series: list[tuple[str, str]]) -> tuple[list[str], list]:
    """Bootstrap intervals and win / tie / loss tables of one family (see :mod:`pathattr_bench.stats`)."""
    from .stats import compare_family, interval_table, outcome_tables

    labels = _labels()
    counts: dict[str, int] = defaultdict(int)
    for method, _ in series:
        counts[method] += 1
    names, values = [], defaultdict(dict)
    for method, key in series:
        name = method if counts[method] == 1 else f"{method}@{key[:8]}"
        if counts[method] > 1:
            labels[name] = f"{labels.get(method, method)} ({key[:8]})"
        names.append(name)
        rows = store.query("SELECT metric, example, value FROM results WHERE family = ? AND model = ? AND method = ? "
                           "AND hp_hash = ?", (fam, model, method, key))
        for metric, example, value in rows:
            values[metric].setdefault(name, {})[int(example)] = value
    if not values:
        return [], []
    directions = dict(DIRECTIONS)
    comparisons = compare_family(values, directions, names)
    order = [k for k in DIRECTIONS if k in values]
    lines = [f"### {fam} ({profile}) — statistics", "",
             "Mean [95 % bootstrap interval] over the explicands (2,000 resamples of the explicands, the same "
             "resamples for every method):", "",
             *interval_table(fam, values, names, labels, {k: ARROWS.get(v, "") for k, v in DIRECTIONS.items()})]
    if comparisons:
        lines += [f"Paired Wilcoxon signed-rank tests, Holm-corrected across the {len(comparisons)} comparisons "
                  "of this family; win / loss = adjusted p < 0.05 for / against the IG2 variant in the metric's "
                  "direction:", "", *outcome_tables(fam, comparisons, labels, order)]
    return lines, comparisons


def _family_section(store: Store, fam: str, model: str, profile: str, series: list[tuple[str, str]], out: Path,
                    figures: bool) -> list[str]:
    labels = _labels()
    m = store.query("SELECT accuracy, min_accuracy, load_seconds, info, seed FROM models WHERE "
                    "family = ? AND model = ? AND profile = ? ORDER BY recorded DESC", (fam, model, profile))
    lines = [f"## {fam} — {model} ({profile})", ""]
    if m:
        acc, bar, load_s, info, seed = m[0]
        info = json.loads(info or "{}")
        # the models table keeps the explicand count of the family's last run (a `--limit` piece); the store's
        # results say how many explicands the report covers
        (n_res,), = store.query("SELECT COUNT(DISTINCT example) FROM results WHERE family = ? AND model = ?",
                                (fam, model))
        lines += [f"- accuracy **{acc:.4f}** (stated bar {bar:.2f}; {'meets' if acc >= bar else 'BELOW'} it), "
                  f"{n_res} explicands with results (n per method in the tables), seed {seed}",
                  f"- data: {info.get('dataset', '?')}",
                  f"- weights: {info.get('weights_source', '?')}"
                  + (f", trained in {info['train_seconds']} s" if "train_seconds" in info else "")]
        if "accuracy_note" in info:
            lines.append(f"- note: {info['accuracy_note']}")
        lines.append("")
    data: dict[tuple[str, str], dict[str, list[float]]] = {}
    metric_names: list[str] = []
    for method, key in series:
        rows = store.query("SELECT metric, value FROM results WHERE family = ? AND model = ? AND method = ? AND "
                           "hp_hash = ?", (fam, model, method, key))
        d: dict[str, list[float]] = defaultdict(list)
        for metric, value in rows:
            d[metric].append(value)
        data[(method, key)] = d
        metric_names += [k for k in d if k not in metric_names]
    ordered = [k for k in DIRECTIONS if k in metric_names and k not in COST_METRICS]
    ordered += [k for k in metric_names if k not in DIRECTIONS]
    head = ["method", "n"] + [f"{k} {ARROWS.get(DIRECTIONS.get(k, ''), '')}".strip() for k in ordered]
    head += ["passes / example", "seconds / example"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, key in series:
        d = data[(method, key)]
        n = mean_se(d.get("cost_seconds", []))[2]
        cells = [labels.get(method, method), str(n)]
        for k in ordered:
            mean, se, nk = mean_se(d.get(k, []))
            if nk == 0:
                cells.append("n/a")
            else:
                cells.append(_fmt(mean, se) + (f" (n={nk})" if nk != n else ""))
        cells.append(f"{mean_se(d.get('cost_passes', []))[0]:.0f}")
        cells.append(f"{mean_se(d.get('cost_seconds', []))[0]:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    hp_rows = []
    for method, key in series:
        h = store.query("SELECT json FROM hyperparameters WHERE hp_hash = ?", (key,))
        if h:
            hp = json.loads(h[0][0]).get("method", {})
            hp_rows.append(f"`{method}` ({key[:8]}): " + ", ".join(f"{k}={v}" for k, v in hp.items()))
    if hp_rows:
        lines += ["<details><summary>hyperparameters</summary>", "", *[f"- {r}" for r in hp_rows], "",
                  "</details>", ""]
    if figures:
        fig_dir = out / "figures"
        stem = f"{fam}_{model}_{profile}".replace("/", "-")
        made = []
        for example in range(2):
            p = fig_dir / f"{stem}_example{example}.png"
            if _plot_heatmaps(store, fam, model, series, example, p):
                made.append(f"![{fam} example {example}](figures/{p.name})")
        for kind in ("insertion", "deletion"):
            p = fig_dir / f"{stem}_{kind}.png"
            if _plot_curves(store, fam, model, series, kind, p):
                made.append(f"![{fam} {kind}](figures/{p.name})")
        if made:
            lines += [*made, ""]
    return lines
