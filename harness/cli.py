"""The `crlbench` command: argument parsing and dispatch only; the work lives elsewhere.

    crlbench run suite=quickstart [key=value ...] [--force] [--dry-run]
    crlbench table [suite=NAME] [dataset=A,B] [metric=M,N] [method=X,Y] [--format F]
                   [--interval std|t|bootstrap] [--vs paper]
    crlbench plot KIND [suite=NAME] [dataset=A,B] [metric=M] [--output DIR]
    crlbench report [suite=NAME] [--output FILE]
    crlbench site [suite=A,B] [--output DIR] [--no-figures]
    crlbench bundle suite=NAME [key=value ...] [--output FILE] [--no-weights] | verify BUNDLE
    crlbench bench [key=value ...]
    crlbench new-method NAME [--dir PATH]
    crlbench methods [--check] | datasets [--classes NAME] | evaluators
    crlbench suites

Errors a user can cause print one line and exit with code 2; failed runs exit with code 1, and
so does a store that cannot be written mid-suite (a full disk), with one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from crlbench.errors import StoreWriteError, UserError
from crlbench.report.kinds import FIGURE_KINDS, TABLE_FORMATS, TABLE_INTERVALS

if TYPE_CHECKING:  # rich loads inside main(), where Ctrl-C during start-up is caught
    from rich.console import Console
    from rich.table import Table

    from crlbench.store import StoreScan

INTERRUPTED = ("crlbench: interrupted; finished runs are kept and the next identical "
               "`crlbench run` resumes the others from their last epoch checkpoint")
STORE_STOPPED = ("the suite stopped; finished runs are kept, and the same command resumes the "
                 "others from their last checkpoint once the store can be written")
TABLE_KEYS = ("suite", "dataset", "metric", "method", "results.dir")
PLOT_KEYS = ("suite", "dataset", "metric", "results.dir")
REPORT_KEYS = ("suite", "results.dir")
PIPED_WIDTH = 200


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crlbench", description="Benchmark contrastive and clustering representation "
                                     "learning methods on one fixed protocol.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a suite (skips runs whose record exists)")
    run.add_argument("overrides", nargs="*", metavar="key=value",
                     help="suite=NAME|PATH.yaml, then any config key, e.g. train.epochs=5 "
                          "method=simclr,raw seeds=[0,1,2]")
    run.add_argument("--force", action="store_true", help="rerun runs that have a record")
    run.add_argument("--dry-run", action="store_true",
                     help="print the resolved config and the runs, run nothing")

    evaluate = sub.add_parser("evaluate", help="score a suite's finished runs again from their "
                                               "kept weights, with the suite's (possibly "
                                               "changed) eval section; never trains")
    evaluate.add_argument("overrides", nargs="*", metavar="key=value",
                          help="suite=NAME|PATH.yaml, then any config key, e.g. "
                               "eval.metrics=[knn,linear,rankme] eval.knn_temperature=0.1")
    evaluate.add_argument("--force", action="store_true",
                          help="score again runs whose record already has this evaluation")
    evaluate.add_argument("--dry-run", action="store_true",
                          help="print the resolved config and the runs, evaluate nothing")

    table = sub.add_parser("table", help="tabulate run records")
    table.add_argument("filters", nargs="*", metavar="key=value",
                       help=f"filters: {', '.join(TABLE_KEYS)} (comma-separated lists)")
    table.add_argument("--format", default="terminal", choices=TABLE_FORMATS)
    table.add_argument("--interval", default="std", choices=TABLE_INTERVALS,
                       help="beside each mean: the sample std (default), or the 95%% interval "
                            "of the mean over seeds (t, or percentile bootstrap)")
    table.add_argument("--vs", choices=("paper",), default=None,
                       help="paper: each of our numbers beside the published one of the same "
                            "method, dataset and metric (the tables the suite mirrors), with "
                            "the difference and the conventions that differ")
    table.add_argument("--output", type=Path, help="write the table to this file")

    plot = sub.add_parser("plot", help="draw figures from run records (PNG and PDF)")
    plot.add_argument("kind", choices=(*FIGURE_KINDS, "all"),
                      help="the figure; all: every figure the records allow")
    plot.add_argument("filters", nargs="*", metavar="key=value",
                      help=f"{', '.join(PLOT_KEYS)}; metric is the imbalance figure's "
                           "(default head_acc, else kmeans_acc) and the learning curves' "
                           "(default knn200_acc)")
    plot.add_argument("--output", type=Path,
                      help="folder for the figures (default <results.dir>/<suite>/figures)")

    report = sub.add_parser("report", help="write a suite's Markdown report page with figures")
    report.add_argument("filters", nargs="*", metavar="key=value",
                        help=f"{', '.join(REPORT_KEYS)}")
    report.add_argument("--output", type=Path,
                        help="the page (default <results.dir>/<suite>/report.md); figures go "
                             "into figures/ beside it")

    site = sub.add_parser("site", help="write a static HTML leaderboard of the records (no "
                                       "server, no network: open its index.html)")
    site.add_argument("filters", nargs="*", metavar="key=value",
                      help=f"{', '.join(REPORT_KEYS)} (suite: comma-separated; default: every "
                           "suite of the store)")
    site.add_argument("--output", type=Path,
                      help="the site's folder (default <results.dir>/site); replaced whole")
    site.add_argument("--no-figures", action="store_true",
                      help="leave out the figures and the runs' training curves (faster)")

    bundle = sub.add_parser("bundle", help="write one archive that publishes a suite: its "
                                           "records, kept weights, resolved suite, site and a "
                                           "manifest of hashes")
    bundle.add_argument("overrides", nargs="*", metavar="key=value",
                        help="suite=NAME|PATH.yaml and the overrides the suite was run with "
                             "(results.dir=PATH for another store)")
    bundle.add_argument("--output", type=Path,
                        help="the archive (default ./<suite>.bundle.tar.gz)")
    bundle.add_argument("--no-weights", action="store_true",
                        help="leave the kept weights out (records and site only)")
    bundle.add_argument("--no-figures", action="store_true",
                        help="a site without figures and curves (faster)")
    verify = sub.add_parser("verify", help="check a bundle: every file against its manifest, "
                                           "records, weights and the suite's plan")
    verify.add_argument("bundle", type=Path, help="the .tar.gz that crlbench bundle wrote")

    bench = sub.add_parser("bench", help="measure the harness's speed: training images/s "
                                         "(eager, compiled, vs a DataLoader), evaluation and "
                                         "fixed costs; prints tables, writes a JSON")
    bench.add_argument("overrides", nargs="*", metavar="key=value",
                       help="e.g. backbone=convnet_tiny batch_size=128 steps=20 workers=[0,2] "
                            "eval_sizes=[10000] compile=false output=PATH.json (defaults: "
                            "the H100 target setting; see crlbench.bench.config)")

    new = sub.add_parser("new-method", help="write an installable method plugin package to "
                                            "start from (pip install -e it, then run it)")
    new.add_argument("name", help="the method's registry name: lower case letters, digits, _")
    new.add_argument("--dir", type=Path, default=None,
                     help="where to write it (default ./crlbench-NAME); must not exist or be "
                          "empty")

    methods = sub.add_parser("methods", help="list installed methods")
    methods.add_argument("--check", action="store_true",
                         help="run crlbench.testing.check_method on every method")
    datasets = sub.add_parser("datasets", help="list registered datasets (built-in and "
                                               "plugins')")
    datasets.add_argument("--classes", metavar="NAME", default=None,
                          help="print the WNIDs of a pinned ImageNet subset, one a line, in "
                               "label order")
    sub.add_parser("evaluators", help="list registered evaluators (built-in and plugins')")
    sub.add_parser("suites", help="list shipped suites")
    return parser


def _split_suite(args: list[str]) -> tuple[str | None, list[str]]:
    suite, rest = None, []
    for item in args:
        if item.startswith("suite="):
            suite = item.split("=", 1)[1]
        else:
            rest.append(item)
    return suite, rest


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    return _run_suite(args, console, evaluate_only=False)


def cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    return _run_suite(args, console, evaluate_only=True)


def _evaluable(specs: list, store: Path, suite: str) -> list:
    """For `crlbench evaluate`: the specs it can score without training (kept weights, or a
    method with nothing to train); a note for each of the others, and UserError when none."""
    from crlbench.evaluations import find_kept

    scorable = {s.run_id for s in specs if not s.plugin.obj.trainable or find_kept(s, store)}
    ready = [s for s in specs if s.run_id in scorable]
    missing = [s for s in specs if s.run_id not in scorable]
    for spec in missing:
        _note(f"not evaluated: {spec.label} has no kept weights (trained with "
              "results.keep_weights=false, before weights were kept, or not yet)")
    if missing and not ready:
        raise UserError(f"none of the {len(missing)} runs to evaluate has kept weights; "
                        f"`crlbench run suite={suite}` trains them")
    return ready


def _run_suite(args: argparse.Namespace, console: Console, evaluate_only: bool) -> int:
    """`crlbench run`, or with `evaluate_only` `crlbench evaluate`: the runs without a
    finished record (all with --force), each scored from the kept weights of its training
    when the store has them. run --force trains again; evaluate never trains."""
    from crlbench.data import DatasetCache, check_source
    from crlbench.executors import get_executor
    from crlbench.executors.base import pending, wait_for_elsewhere
    from crlbench.executors.progress import make_progress
    from crlbench.loader import load_suite
    from crlbench.preflight import preflight
    from crlbench.suite import expand
    from crlbench.validate import unused_method_cfg

    suite, overrides = _split_suite(args.overrides)
    if suite is None:
        raise UserError(f"crlbench {args.command} needs suite=NAME (see `crlbench suites`) or "
                        "suite=PATH.yaml")
    cfg = load_suite(suite, overrides)
    specs = expand(cfg)
    for warning in unused_method_cfg(cfg):
        _note(f"warning: {warning}")
    for source in {spec.dataset: spec.source for spec in specs}.values():
        check_source(source, root=cfg.data.root, download=cfg.data.download,
                     use_unlabeled=cfg.data.use_unlabeled)
    cache = DatasetCache()
    executor = get_executor(cfg, cache)
    store = Path(cfg.results.dir)
    todo, done = pending(specs, store, args.force)
    if evaluate_only:  # the runs without kept weights are left out, with a note each
        todo = _evaluable(todo, store, suite)
        kept = {s.run_id for s in todo + done}
        specs = [s for s in specs if s.run_id in kept]
    if not args.dry_run:
        # reads the datasets of the runs still to do: bad files stop here, before any record
        preflight(todo, cache, store, cfg.executor)
        if cfg.executor == "ray":
            cache.clear()  # the trials read their own; the driver need not hold it
    if args.dry_run:
        _print_plan(console, cfg, specs, store)
        return 0
    _clean_leftovers(store, specs)
    progress = make_progress(console)
    weights = "require" if evaluate_only else "retrain" if args.force else "reuse"
    summary = executor.run(specs, store, progress, force=args.force, weights=weights)
    while summary.elsewhere and not summary.interrupted:
        # another `crlbench run` holds some runs: wait for them, so that this command ends
        # with the suite complete (and run here any that process abandons)
        _note(f"waiting for {len(summary.elsewhere)} runs that another crlbench process is "
              "running (Ctrl-C stops waiting; their records will appear when they finish)")
        abandoned = wait_for_elsewhere(summary, store)
        if abandoned:
            summary.merge(executor.run(abandoned, store, progress, force=False,
                                       weights=weights))
    _print_table(console, store, cfg.name, run_ids={s.run_id for s in specs})
    if summary.interrupted:
        print(INTERRUPTED, file=sys.stderr)
    return summary.exit_code


def _clean_leftovers(store: Path, specs: list) -> None:
    """Remove what killed processes left in the suite's folders, with a note; a store that
    cannot be written (a finished suite on a read-only disk) keeps them, with a note."""
    from crlbench.executors.base import spec_path
    from crlbench.leftovers import clean

    try:
        removed = clean(store, {spec_path(store, s).parent for s in specs})
    except StoreWriteError as e:
        _note(f"note: leftovers of killed runs stay in the store ({e})")
        return
    if removed:
        more = f"; and {len(removed) - 3} more" if len(removed) > 3 else ""
        _note(f"note: removed {len(removed)} things that killed runs left: "
              f"{'; '.join(removed[:3])}{more}")


def _print_plan(console: Console, cfg, specs, store: Path) -> None:
    from omegaconf import OmegaConf
    from rich.table import Table

    from crlbench.config import to_dict
    from crlbench.store import is_done, record_path

    shown = to_dict(cfg)
    # every method's resolved hyper-parameters (defaults, preset, overrides; a sweep's first
    # combination), not only the keys the suite sets
    shown["method_cfg"] = {}
    for s in specs:
        shown["method_cfg"].setdefault(s.method, s.config["method_cfg"])
    console.print(OmegaConf.to_yaml(shown), markup=False, highlight=False)
    table = Table("run", "run_id", "status", title=f"{len(specs)} runs of suite {cfg.name}")
    for s in specs:
        done = is_done(record_path(store, s.suite, s.method, s.dataset, s.run_id))
        table.add_row(s.label, s.run_id, "done" if done else "to run")
    console.print(table)


def _print_table(console: Console, store: Path, suite: str, run_ids: set[str]) -> None:
    """The headline metrics of this run's records; `crlbench table` shows every metric."""
    from crlbench.report.output import headline
    from crlbench.store import scan

    records = [r for r in scan(store, [suite]).records if r["run_id"] in run_ids]
    table, more = headline(records, console.width)
    if table is None:
        return
    console.print(table)
    if more:
        console.print(f"more metrics: crlbench table suite={suite} results.dir={store}",
                      markup=False, highlight=False)


def _parse_filters(items: list[str], keys: tuple[str, ...] = TABLE_KEYS,
                   what: str = "table filter") -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in keys:
            raise UserError(f"{what} {item!r} is not key=value with key one of {', '.join(keys)}")
        filters[key] = [v for v in value.split(",") if v]
    return filters


def _one(filters: dict[str, list[str]], key: str) -> str | None:
    values = filters.get(key)
    if values is not None and len(values) != 1:
        raise UserError(f"{key}= takes one value, got {len(values)}")
    return values[0] if values else None


def _note(text: str) -> None:
    print(text, file=sys.stderr)  # one unwrapped line, as errors are


def _scan(filters: dict[str, list[str]]) -> tuple[Path, list[dict]]:
    """The results store named by results.dir (default ./results) and its records, of the
    suites filtered on; unreadable files are skipped with a warning, and so are records of a
    method version older than the newest in their table cell."""
    store, found = _scan_store(filters)
    return store, found.records


def _scan_store(filters: dict[str, list[str]]) -> tuple[Path, StoreScan]:
    """`_scan`, with the file each record was read from (`StoreScan.path_of`)."""
    from crlbench.report.summary import newest_method_versions
    from crlbench.store import scan

    store = Path(filters.pop("results.dir", ["results"])[0])
    if not store.is_dir():
        raise UserError(f"results store {store} does not exist; run a suite first or pass "
                        "results.dir=PATH")
    found = scan(store, filters.get("suite"))
    for problem in found.problems:
        _note(f"warning: skipped {problem}")
    if not found.records:
        which = f" for suite {','.join(filters['suite'])}" if "suite" in filters else ""
        raise UserError(f"no run records under {store}{which}")
    records, warnings = newest_method_versions(found.records)
    for warning in warnings:
        _note(f"warning: {warning}")
    found.records = records
    return store, found


def cmd_table(args: argparse.Namespace, console: Console) -> int:
    from crlbench.report import mixed_configs
    from crlbench.report.output import comparison_output, table_output

    filters = _parse_filters(args.filters)
    _, records = _scan(filters)
    shown = {"datasets": filters.get("dataset"), "methods": filters.get("method")}
    if args.vs == "paper":
        if args.interval != "std":
            raise UserError("--interval applies to tables, not to --vs paper (which shows "
                            "mean ± std beside the published number)")
        out = comparison_output(records, args.format, width=console.width,
                                plain=bool(args.output), metrics=filters.get("metric"), **shown)
    else:
        out = table_output(records, args.format, width=console.width, plain=bool(args.output),
                           metrics=filters.get("metric"), interval=args.interval, **shown)
    for warning in mixed_configs(records, **shown):
        _note(f"warning: {warning}")
    if args.output:
        args.output.write_text(out)
    elif isinstance(out, str):
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    else:
        console.print(out)
    return 0


def cmd_plot(args: argparse.Namespace, console: Console) -> int:
    from crlbench.report.figures import make_figures
    from crlbench.report.select import select

    filters = _parse_filters(args.filters, PLOT_KEYS, "plot argument")
    store, records = _scan(filters)
    records = select(records, suite=_one(filters, "suite"), datasets=filters.get("dataset"))
    suite = str(records[0].get("suite"))
    output = args.output or store / suite / "figures"
    made = make_figures(records, args.kind, output, suite, metric=_one(filters, "metric"))
    for kind, why in made.skipped.items():
        _note(f"note: no {kind} figure: {why}")
    if not made.written:
        raise UserError(f"no figure can be drawn from the records of suite {suite}")
    for paths in made.written.values():
        for path in paths:
            print(path)
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from crlbench.report.figures import make_figures
    from crlbench.report.page import render_page, suite_description
    from crlbench.report.select import select

    filters = _parse_filters(args.filters, REPORT_KEYS, "report argument")
    store, records = _scan(filters)
    records = select(records, suite=_one(filters, "suite"))
    suite = str(records[0].get("suite"))
    page = args.output or store / suite / "report.md"
    made = make_figures(records, "all", page.parent / "figures", suite)
    for kind, why in made.skipped.items():
        _note(f"note: no {kind} figure: {why}")
    links = {kind: f"figures/{paths[0].name}" for kind, paths in made.written.items()}
    text = render_page(records, suite, suite_description(suite), links)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
    print(page)
    return 0


def cmd_site(args: argparse.Namespace, console: Console) -> int:
    from crlbench.report.page import suite_description
    from crlbench.site import build_site, check_output

    filters = _parse_filters(args.filters, REPORT_KEYS, "site argument")
    store, found = _scan_store(filters)
    output = args.output or store / "site"
    check_output(output, store)
    by_suite: dict[str, list[dict]] = {}
    for record in found.records:
        by_suite.setdefault(str(record["suite"]), []).append(record)
    by_suite = dict(sorted(by_suite.items()))
    notes = build_site(by_suite, found.path_of, output,
                       {suite: suite_description(suite) for suite in by_suite},
                       figures=not args.no_figures)
    for note in notes:
        _note(f"note: {note}")
    print(output / "index.html")
    return 0


def cmd_bundle(args: argparse.Namespace, console: Console) -> int:
    from crlbench.bundle import write_bundle
    from crlbench.loader import load_suite

    suite, overrides = _split_suite(args.overrides)
    if suite is None:
        raise UserError("crlbench bundle needs suite=NAME (see `crlbench suites`) or "
                        "suite=PATH.yaml")
    cfg = load_suite(suite, overrides)
    _, found = _scan_store({"results.dir": [str(cfg.results.dir)], "suite": [str(cfg.name)]})
    output = args.output or Path(f"{cfg.name}.bundle.tar.gz")
    made = write_bundle(cfg, found.records, found.path_of, output,
                        weights=not args.no_weights, figures=not args.no_figures)
    for note in made.notes:
        _note(f"note: {note}")
    print(f"{made.path}: {made.records} records, {made.weights} kept weights, {made.files} "
          f"files; sha256 {made.sha256}")
    return 0


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    from crlbench.bundle import verify_bundle

    result = verify_bundle(args.bundle)
    for note in result.notes:
        _note(f"note: {note}")
    for problem in result.problems:
        print(f"FAILED {problem}")
    summary = (f"{args.bundle}: suite {result.suite}, {result.records} records, "
               f"{result.weights} kept weights, {result.files} files")
    if result.problems:
        print(f"{summary}: {len(result.problems)} problem"
              f"{'s' if len(result.problems) != 1 else ''}")
        return 1
    print(f"{summary}: ok")
    return 0


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    from crlbench.bench import load_bench_config, run_bench

    run_bench(load_bench_config(args.overrides), args.overrides, console)
    return 0


def _plugin_table(reg, summary, title: str, check=None, version=None) -> tuple[Table, int]:
    """A registry's entries as a table (name, package, version, summary[, protocol]) and the
    count of unusable or, with `check`, broken ones. `check(obj)` returns None or why;
    `version(entry)` is what the version column shows (default: the package's version)."""
    from rich.table import Table
    from rich.text import Text

    columns = [reg.kind, "package", "version", "summary"] + (["protocol"] if check else [])
    table = Table(*columns, title=title)
    broken = 0
    for entry in reg.entries():
        text = (Text(summary(entry.obj)) if entry.ok
                else Text(f"unusable: {entry.error}", style="red"))
        shown = version(entry) if version and entry.ok else entry.version
        row = [Text(entry.name), Text(entry.package), Text(shown), text]
        if check:
            why = check(entry.obj) if entry.ok else "–"
            row.append(Text("ok", style="green") if why is None
                       else Text(why, style="red" if entry.ok else ""))
            broken += entry.ok and why is not None
        broken += not entry.ok
        table.add_row(*row)
    return table, broken


def _protocol_problem(cls) -> str | None:
    from crlbench.errors import MethodCheckError
    from crlbench.testing import check_method

    for preset in cls.presets or [None]:  # every preset of a method that has them
        try:
            check_method(cls, config=None if preset is None else {"preset": preset},
                         channels=(cls.input_channels or (3,))[0])
        except MethodCheckError as e:
            return f"broken: {e}"
        except Exception as e:  # a plugin may raise anything; report it by name
            return f"broken: raised {type(e).__name__}: {e}"
    return None


def cmd_methods(args: argparse.Namespace, console: Console) -> int:
    from crlbench.registry import method_version, methods

    # a method's version (a built-in's own, a plugin's package's) is in its runs' identity
    table, broken = _plugin_table(methods, lambda cls: cls.summary(), "crlbench methods",
                                  _protocol_problem if args.check else None,
                                  version=method_version)
    console.print(table)
    return 1 if broken and args.check else 0


def cmd_datasets(args: argparse.Namespace, console: Console) -> int:
    from crlbench.registry import datasets

    if args.classes is not None:
        from crlbench.data.imagenet import BY_NAME

        if args.classes not in BY_NAME:
            raise UserError(f"--classes takes a pinned ImageNet subset, not {args.classes!r}; "
                            f"choose from {', '.join(sorted(BY_NAME))}")
        print("\n".join(BY_NAME[args.classes].classes()))
        return 0

    table, _ = _plugin_table(datasets, lambda info: f"{info.summary} ({info.num_classes} classes,"
                             f" {info.channels} channel{'s' * (info.channels > 1)})",
                             "crlbench datasets (and any data.folders.NAME=PATH)")
    console.print(table)
    return 0


def cmd_evaluators(args: argparse.Namespace, console: Console) -> int:
    from crlbench.registry import evaluators

    def summary(fn) -> str:
        doc = (getattr(fn, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""

    table, _ = _plugin_table(evaluators, summary, "crlbench evaluators (eval.metrics=[...])")
    console.print(table)
    return 0


def cmd_new_method(args: argparse.Namespace, console: Console) -> int:
    from crlbench.scaffold import write_method_package

    path = write_method_package(args.name, args.dir)
    console.print(f"wrote {path}; next:\n"
                  f"  pip install -e {path}\n"
                  f"  pytest {path}/tests\n"
                  f"  crlbench run suite=quickstart method={args.name},simclr",
                  markup=False, highlight=False)
    return 0


def cmd_suites(args: argparse.Namespace, console: Console) -> int:
    import yaml
    from rich.table import Table

    from crlbench.loader import shipped_suites

    table = Table("suite", "description", title="shipped suites (crlbench run suite=NAME)")
    for name, path in sorted(shipped_suites().items()):
        data = yaml.safe_load(path.read_text()) or {}
        table.add_row(name, str(data.get("description", "")))
    console.print(table)
    return 0


COMMANDS = {"run": cmd_run, "evaluate": cmd_evaluate, "table": cmd_table, "plot": cmd_plot,
            "site": cmd_site, "bundle": cmd_bundle, "verify": cmd_verify,
            "report": cmd_report, "bench": cmd_bench, "new-method": cmd_new_method,
            "methods": cmd_methods, "datasets": cmd_datasets, "evaluators": cmd_evaluators,
            "suites": cmd_suites}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting key=value items come before or after the --options."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    positional = "overrides" if args.command in ("run", "evaluate", "bench") else "filters"
    if not extra:
        return args
    if not hasattr(args, positional) or any(i.startswith("-") or "=" not in i for i in extra):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setattr(args, positional, [*getattr(args, positional), *extra])
    return args


def _console() -> Console:
    """rich's console; piped or redirected output is not wrapped at rich's 80-column default:
    text is not wrapped at all and tables get $COLUMNS, else 200 columns."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=int(os.environ.get("COLUMNS") or 0) or PIPED_WIDTH, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return COMMANDS[args.command](args, _console())
    except UserError as e:
        print(f"crlbench: error: {e}", file=sys.stderr)
        return 2
    except StoreWriteError as e:
        print(f"crlbench: error: {e}; {STORE_STOPPED}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
