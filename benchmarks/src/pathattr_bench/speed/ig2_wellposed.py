"""IG2 at the paper preset vs pathattr's well-posed IG2 on EfficientNet-Lite0 and the committed real photos.

For photos taken in pairs from ``data/photos.tsv`` (table order; each pair is one batch ``B = 2``) with ``R``
other-class references per photo (drawn, seeded, from the other table photos), it runs

- **preset**: ``IG2.explain(..., preset="paper-imagenet")`` (201 fixed steps of 1.504, bounds (0, 1), left rule),
  with all ``B * R`` rows in one forward (``internal_batch_size = B * R``);
- **wellposed**: the library default (no preset; = ``preset="wellposed"``: damped Newton steps, adaptive
  trapezoid segments, ``path_layout="auto"``, i.e. one path row per forward call on these photos), twice:
  ``internal_batch_size = B * R`` and ``internal_batch_size=1`` (these differ only in how the refinement rows are
  chunked; with ``path_layout="chunks"`` the path itself would be chunked too: EfficientNet-Lite0 on this CPU
  gives bit-identical rows for batches of 1..3 rows but not for 4, round-off ~2e-6 on the logits);
- the preset only on the first ``--preset-pairs`` pairs (its cost per explicand is fixed by its 201 steps; its gap
  is what costs time), and on the first ``--probe-pairs`` pairs both variants once more on the photos perturbed by
  float32 round-off (``x * (1 + 2^-24 N(0, 1))``): a machine-independent probe of how the path amplifies
  round-off, since the layouts above may round identically on a given CPU.

and prints per photo: relative completeness gap, Pearson and Spearman between the two layouts, and cost (model
rows = forward + backward rows per explicand), and the Pearson / Spearman of the round-off probe. Results are
appended to a JSON-lines file (``--out``) and pairs
already there are skipped, so a killed run resumes. Single-threaded (``torch.set_num_threads(1)``).

``python -m pathattr_bench.speed.ig2_wellposed --photos 20 --refs 2 --out /tmp/ig2_wellposed.jsonl``
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def pearson(a: Tensor, b: Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def spearman(a: Tensor, b: Tensor) -> float:
    def ranks(t: Tensor) -> Tensor:
        r = torch.empty_like(t, dtype=torch.float64)
        r[t.flatten().argsort()] = torch.arange(t.numel(), dtype=torch.float64)
        return r

    return pearson(ranks(a.flatten()), ranks(b.flatten()))


def _run(ig2: Any, x: Tensor, refs: Any, preset: str | None, ibs: int) -> tuple[Any, float]:
    t0 = time.perf_counter()
    e = ig2.explain(x, refs, preset=preset, internal_batch_size=ibs, return_gradcf=True)
    return e, time.perf_counter() - t0


def _summary(e: Any, b: int) -> dict[str, Any]:
    rows = (e.cost.forward_rows + e.cost.backward_rows) / b
    return {"rel_gap": [float(v) for v in e.relative_delta], "abs_gap": [float(v) for v in e.convergence_delta],
            "explained": [float(v) for v in (e.outputs - e.baseline_outputs)], "rows": rows,
            "forward_rows": e.cost.forward_rows / b, "backward_rows": e.cost.backward_rows / b,
            "valid": e.extras["counterfactual_valid"].tolist(), "distance_ratio": e.extras["distance_ratio"].tolist()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=20, help="number of photos (rounded up to pairs)")
    ap.add_argument("--refs", type=int, default=2, help="other-class references per photo")
    ap.add_argument("--preset-pairs", type=int, default=1, help="pairs on which the preset runs (its cost is "
                    "deterministic: 201 steps; its gap is the expensive part)")
    ap.add_argument("--probe-pairs", type=int, default=1, help="pairs on which both variants also run on the "
                    "photos perturbed by float32 round-off (x * (1 + 2^-24 N(0, 1))) and at ibs=1 for the preset")
    ap.add_argument("--out", default="ig2_wellposed.jsonl", help="JSON-lines results (resumable)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    import pathattr
    from pathattr.methods.ig2 import IG2
    from pathattr_bench.families.imagenet import load_table_photos, photo_table
    from pathattr_bench.imagenet import load_efficientnet_lite0

    t_start = time.perf_counter()
    table = photo_table()
    n_pairs = math.ceil(args.photos / 2)
    photos = load_table_photos(table)
    model = load_efficientnet_lite0()
    ig2 = IG2(model, model.classifier)
    out = Path(args.out)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[rec["pair"]] = rec
    for p in range(n_pairs):
        if p in done:
            continue
        idx = [2 * p, 2 * p + 1]
        x = photos[idx]
        keep = torch.ones(photos.shape[0], dtype=torch.bool)
        keep[idx] = False
        refs = pathattr.references.other_class(model, x, photos[keep], n_references=args.refs, generator=p)
        ibs_all = 2 * args.refs
        rec: dict[str, Any] = {"pair": p, "photos": [table[i].file for i in idx],
                               "classes": [table[i].class_name for i in idx], "refs": args.refs}
        w_all, s_all = _run(ig2, x, refs, None, ibs_all)
        w_one, s_one = _run(ig2, x, refs, None, 1)
        rec["wellposed"] = {**_summary(w_all, 2), "seconds": s_all, "seconds_ibs1": s_one,
                            "rel_gap_ibs1": [float(v) for v in w_one.relative_delta],
                            "pearson": [pearson(w_all.attributions[i], w_one.attributions[i]) for i in range(2)],
                            "spearman": [spearman(w_all.attributions[i], w_one.attributions[i]) for i in range(2)],
                            "gradcf_apart": (w_all.extras["gradcf"] - w_one.extras["gradcf"]).flatten(2)
                            .norm(dim=2).tolist()}
        run_preset = p < args.preset_pairs
        if run_preset:
            pre, s_pre = _run(ig2, x, refs, "paper-imagenet", ibs_all)
            rec["preset"] = {**_summary(pre, 2), "seconds": s_pre}
        if p < args.probe_pairs:
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(p), dtype=x.dtype)
            xp = x * (1 + 2.0**-24 * noise)  # float32 round-off of the inputs
            w_noise, _ = _run(ig2, xp, refs, None, ibs_all)
            rec["wellposed"]["pearson_roundoff"] = [pearson(w_all.attributions[i], w_noise.attributions[i])
                                                    for i in range(2)]
            rec["wellposed"]["spearman_roundoff"] = [spearman(w_all.attributions[i], w_noise.attributions[i])
                                                     for i in range(2)]
            if run_preset:
                pre_noise, _ = _run(ig2, xp, refs, "paper-imagenet", ibs_all)
                rec["preset"].update(
                    pearson_roundoff=[pearson(pre.attributions[i], pre_noise.attributions[i]) for i in range(2)],
                    spearman_roundoff=[spearman(pre.attributions[i], pre_noise.attributions[i]) for i in range(2)])
        with out.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        done[p] = rec
        _print_pair(rec)
    _print_table(done, time.perf_counter() - t_start)


def _fmt(v: Any, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def _print_pair(rec: dict[str, Any]) -> None:
    w, pre = rec["wellposed"], rec.get("preset", {})
    for i in range(2):
        print(f"{rec['photos'][i]:<28} preset gap {_fmt(pre.get('rel_gap', [None] * 2)[i])} "
              f"r(round-off) {_fmt(pre.get('pearson_roundoff', [None] * 2)[i], '.4f')} "
              f"rows {_fmt(pre.get('rows'), '.0f')} | "
              f"wellposed gap {w['rel_gap'][i]:.3g} r {w['pearson'][i]:.6f} rho {w['spearman'][i]:.6f} "
              f"rows {w['rows']:.0f} r(round-off) {_fmt(w.get('pearson_roundoff', [None] * 2)[i], '.6f')}",
              flush=True)


def _print_table(done: dict[int, dict[str, Any]], seconds: float) -> None:
    print("\n| photo | class | preset rel gap | preset Pearson (ibs) | preset rows | wellposed rel gap | "
          "wellposed Pearson | wellposed Spearman | wellposed rows |")
    print("|---|---|---|---|---|---|---|---|---|")
    gaps, gaps_pre, rs, rhos, rows_w, rows_p = [], [], [], [], [], []
    for p in sorted(done):
        rec = done[p]
        w, pre = rec["wellposed"], rec.get("preset", {})
        for i in range(2):
            print(f"| {rec['photos'][i]} | {rec['classes'][i]} | {_fmt(pre.get('rel_gap', [None] * 2)[i])} | "
                  f"{_fmt(pre.get('pearson_roundoff', [None] * 2)[i], '.4f')} / "
                  f"{_fmt(pre.get('spearman_roundoff', [None] * 2)[i], '.4f')} | {_fmt(pre.get('rows'), '.0f')} | "
                  f"{w['rel_gap'][i]:.4f} | {w['pearson'][i]:.6f} / {w['spearman'][i]:.6f} | "
                  f"{_fmt(w.get('pearson_roundoff', [None] * 2)[i], '.6f')} / "
                  f"{_fmt(w.get('spearman_roundoff', [None] * 2)[i], '.6f')} | {w['rows']:.0f} |")
            gaps.append(abs(w["rel_gap"][i]))
            rs.append(w["pearson"][i])
            rhos.append(w["spearman"][i])
            rows_w.append(w["rows"])
            if pre:
                gaps_pre.append(abs(pre["rel_gap"][i]))
                rows_p.append(pre["rows"])
    n = len(gaps)
    if not n:
        return
    print(f"\nphotos: {n}; wellposed: |rel gap| mean {sum(gaps) / n:.4f} max {max(gaps):.4f} "
          f"(<= 0.05: {sum(g <= 0.05 for g in gaps)}/{n}); Pearson min {min(rs):.6f}, Spearman min {min(rhos):.6f}; "
          f"rows per photo mean {sum(rows_w) / n:.0f} max {max(rows_w):.0f}")
    if gaps_pre:
        m = len(gaps_pre)
        print(f"preset: |rel gap| mean {sum(gaps_pre) / m:.3f} median {sorted(gaps_pre)[m // 2]:.3f} "
              f"max {max(gaps_pre):.3f}; rows per photo {sum(rows_p) / m:.0f}; wellposed/preset rows "
              f"{sum(rows_w) / sum(rows_p) * m / n:.3f}")
    print(f"wall time of this invocation: {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
