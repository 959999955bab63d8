"""The ``pathattr-bench`` command line (the experiment harness; the library's own command is ``pathattr``).

::

    pathattr-bench run --family mnist --methods ig,eg,guided_ig,blur_ig,ig2 --metrics insertion,deletion --quick
    pathattr-bench run --suite paper --quick --db out/bench.sqlite
    pathattr-bench run --suite paper --profile paper --limit 10 --threads 1 --db docs/results/paper/bench.sqlite
    pathattr-bench run --suite paper --executor ray --address auto --num-workers 16 --db out/bench.sqlite
    pathattr-bench report --db out/bench.sqlite --out docs/results
    pathattr-bench list
    pathattr-bench speed [speed benchmark arguments]
    pathattr-bench explain --family mnist --method ig2 --example 0 --out out/explain_mnist.png

``run`` is resumable: run the same command again after an interruption and only the missing
(example, method) results are computed. ``--executor ray`` spreads the work over Ray actors (``docs/scale.md``).
Exit status 2 on a usage error, a model below its stated accuracy or an unusable ``--db`` (damaged, not a
database, read-only for ``run``); 1 when some work units failed (recorded in the store; the next run retries them).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _options(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--option expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        val: Any = value
        if value.lower() in ("true", "false"):
            val = value.lower() == "true"
        else:
            try:
                val = int(value)
            except ValueError:
                try:
                    val = float(value)
                except ValueError:
                    val = value
        out[key] = val
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pathattr-bench",
                                description="pathattr's experiment harness: families x methods x metrics, speed.")
    sub = p.add_subparsers(dest="command", required=True)
    bsub = sub

    r = bsub.add_parser("run", help="run (or resume) the benchmark into the SQLite store")
    r.add_argument("--family", help="comma-separated families (synthetic, mnist, imagenet, text, wafer, faces)")
    r.add_argument("--suite", choices=["paper"], help="all families of the IG2 paper")
    r.add_argument("--methods", help="comma-separated methods (default: the paper set; see `pathattr-bench list`)")
    r.add_argument("--metrics", help="comma-separated metrics or groups (default: every one that applies)")
    r.add_argument("--quick", action="store_true", help="the CI-sized profile (few explicands, short paths)")
    r.add_argument("--profile", choices=["quick", "full", "paper"],
                   help="quick (= --quick), full (default) or paper (50 class-balanced explicands per family, the "
                        "issue-13 method list)")
    r.add_argument("--threads", type=int, help="torch CPU threads (torch.set_num_threads)")
    r.add_argument("--db", default="out/bench.sqlite", help="SQLite results file (default out/bench.sqlite)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--batch-size", type=int, help="explicands per attribution call (default per family)")
    r.add_argument("--limit", type=int, help="only the first N explicands of each family")
    r.add_argument("--data-path", help="user copy of the real dataset (MNIST IDX folder, ImageNet folder, ...)")
    r.add_argument("--cache-dir", help="where trained models are cached (default ~/.cache/pathattr)")
    r.add_argument("--option", action="append", help="extra load_family keyword, key=value (repeatable)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--report", metavar="DIR", help="write the report into DIR when done")
    r.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (this process, default) or ray (Ray actors; this process stays the only writer)")
    r.add_argument("--address", help="Ray cluster address for --executor ray (auto, ray://HOST:10001; default: "
                                     "RAY_ADDRESS or a new local cluster)")
    r.add_argument("--num-workers", type=int, help="Ray workers (default: the cluster's CPUs / --threads)")
    r.add_argument("--fail-after", type=int, help=argparse.SUPPRESS)
    r.add_argument("--ray-option", action="append", help=argparse.SUPPRESS)  # run_ray keyword, key=value (tests)

    rep = bsub.add_parser("report", help="markdown tables and figures from the store")
    rep.add_argument("--db", default="out/bench.sqlite")
    rep.add_argument("--out", default="out/results",
                     help="report folder (default out/results; the committed reports live in docs/results)")
    rep.add_argument("--no-figures", action="store_true")
    rep.add_argument("--note", action="append", help="a line for the report's environment section (repeatable)")

    bsub.add_parser("list", help="families, methods and metrics")
    bsub.add_parser("speed", help="speed benchmark (arguments are passed to pathattr_bench.speed)", add_help=False)

    e = sub.add_parser("explain", help="explain one example of a family with one method and save a figure")
    e.add_argument("--family", default="mnist")
    e.add_argument("--method", default="ig2")
    e.add_argument("--example", type=int, default=0)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--full", action="store_true", help="full-profile hyperparameters (default quick)")
    e.add_argument("--out", default=None, help="PNG path (default out/explain_<family>_<method>.png)")
    return p


def _bench_run(args: argparse.Namespace, argv: list[str]) -> int:
    from .families.base import AccuracyError
    from .runner import PAPER_SUITE, run
    from .store import StoreError

    if args.suite == "paper":
        families = list(PAPER_SUITE)
        skip_failed = True
    elif args.family:
        families = _csv(args.family) or []
        skip_failed = False
    else:
        print("pathattr-bench run: give --family or --suite paper", file=sys.stderr)
        return 2
    if (args.address or args.num_workers) and args.executor != "ray":
        print("pathattr-bench run: --address and --num-workers need --executor ray", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        stats = run(
            families, _csv(args.methods), _csv(args.metrics), quick=args.quick, profile=args.profile,
            seed=args.seed, db=args.db,
            data_path=args.data_path, cache_dir=args.cache_dir, batch_size=args.batch_size, limit=args.limit,
            options=_options(args.option), progress=not args.no_progress, fail_after=args.fail_after,
            skip_failed_families=skip_failed, command="pathattr-bench " + shlex.join(argv),
            executor=args.executor, address=args.address, num_workers=args.num_workers,
            executor_options=_ray_options(args),
        )
    except (AccuracyError, StoreError) as err:
        print(f"pathattr-bench run: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        if args.executor != "ray" or "--executor ray" not in str(err):
            raise
        print(f"pathattr-bench run: {err}", file=sys.stderr)
        return 2
    except KeyError as err:
        print(f"pathattr-bench run: {err.args[0]}", file=sys.stderr)
        return 2
    print(f"computed {stats.computed} (example, method) attributions, skipped {stats.skipped} already stored, "
          f"wrote {stats.rows} rows to {args.db}")
    for name, seconds in stats.seconds.items():
        print(f"  {name}: {seconds:.1f} s (accuracy {stats.accuracy[name]:.4f})")
    if stats.wall_seconds > 0 and stats.rows:
        print(f"  {stats.rows / stats.wall_seconds:.1f} rows/s over {stats.wall_seconds:.1f} s ({stats.executor}, "
              f"{stats.tasks} work units)")
    if stats.elsewhere:
        print(f"  {stats.elsewhere} examples left to another run working on the same store")
    for line in stats.unavailable + stats.failed:
        print(f"  skipped: {line}")
    for line in stats.task_failures:
        print(f"  failed: {line}", file=sys.stderr)
    if args.report:
        from .report import write_report

        print(f"report: {write_report(args.db, args.report)}")
    if stats.task_failures:
        print(f"pathattr-bench run: {len(stats.task_failures)} work units failed (errors in the store's failures "
              "table); run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


def _ray_options(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.executor != "ray":
        return None
    out = _options(args.ray_option)
    if args.threads:
        out["threads_per_worker"] = args.threads
    return out


def _bench_list() -> int:
    from .methods_registry import METHODS
    from .metrics_registry import DIRECTIONS, GROUPS
    from .runner import FAMILIES

    print("families: " + ", ".join(FAMILIES))
    print("methods:")
    for name, spec in METHODS.items():
        print(f"  {name:12s} {spec.label}{'' if spec.available() else '  [not available]'}")
    print("metrics (group: names):")
    for key, g in GROUPS.items():
        print(f"  {key}: " + ", ".join(f"{n} ({DIRECTIONS[n]})" for n in g.names))
    return 0


def _explain(args: argparse.Namespace) -> int:
    import torch

    from .families._fit import predict
    from .methods_registry import applicable, get_method, reference_settings, select_references
    from .runner import load_family

    family = load_family(args.family, quick=not args.full, seed=args.seed)
    spec = get_method(args.method)
    if not applicable(spec, family):
        print(f"{args.method} does not apply to {args.family}", file=sys.stderr)
        return 2
    i = args.example
    if not 0 <= i < family.inputs.shape[0]:
        print(f"--example must be in [0, {family.inputs.shape[0] - 1}]", file=sys.stderr)
        return 2
    x = family.inputs[i : i + 1]
    target = predict(family.model, x, batch_size=64)
    refs = None
    if spec.needs_references:
        pool_classes = predict(family.model, family.reference_pool, batch_size=64)
        refs = select_references(family, i, x[0], int(target[0]), pool_classes, reference_settings(family),
                                 args.seed).unsqueeze(0)
    expl = spec.run(family, x, target, refs, spec.defaults(family, not args.full), torch.Generator().manual_seed(0))
    print(expl.summary())
    out = args.out or f"out/explain_{args.family}_{args.method}.png"
    a = expl.attributions[0] if isinstance(expl.attributions, tuple) else expl.attributions
    if family.spatial:
        from pathattr.viz import plot_explanations

        image = x[0] if x.shape[1] == 3 else x[0].float().mean(0, keepdim=True).repeat(3, 1, 1)
        plot_explanations(image, {spec.label: a[0]}, title=f"{args.family} example {i}, class {int(target[0])}",
                          path=out)
        print(f"figure: {out}")
    else:
        vals = a[0].sum(-1) if a.ndim == 3 else a[0].reshape(-1)
        print("attributions: " + " ".join(f"{v:.3g}" for v in vals.tolist()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pathattr-bench`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["speed"]:
        from .speed import suite

        return int(suite.main(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _bench_run(args, argv)
    if args.command == "report":
        from .report import write_report
        from .store import StoreError

        try:
            print(write_report(args.db, args.out, figures=not args.no_figures, notes=args.note))
        except StoreError as err:
            print(f"pathattr-bench report: {err}", file=sys.stderr)
            return 2
        return 0
    if args.command == "list":
        return _bench_list()
    if args.command == "explain":
        return _explain(args)
    return 2  # pragma: no cover - argparse enforces the sub-commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
