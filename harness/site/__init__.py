"""`crlbench site`: a static HTML leaderboard written from the run records.

The output folder holds everything the pages need (stylesheet, sorting script, figures, each
run's record), so it can be opened from disk or served by any static host, with no network:

    index.html                 the suites, with their run counts
    assets/site.css, sort.js
    <suite>/index.html         protocol, conventions, provenance, one sortable table per
                               dataset (mean ± std and n per cell, the marks of every table
                               format), average ranks, failed runs, figures
    <suite>/figures/*.png|pdf  the figures `crlbench plot all` draws
    <suite>/runs/<id>.html     a run's status, metrics, curves, config, environment, timings
    <suite>/runs/<id>.json     its record, byte for byte as the store has it

What the pages show is `crlbench.site.context`'s; this module renders and writes. The folder is
written beside and then moved into place, so an interrupted build leaves the old site whole; it
carries a marker file, and only a folder with that marker (or an empty or new one) is replaced,
so `--output` cannot wipe a folder that is not a site. A record whose suite, method, dataset or
run_id is not a plain name (edited by hand) is left out with a note: page paths are built from
them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from importlib.resources import files
from pathlib import Path

from crlbench.errors import UserError
from crlbench.report.provenance import made_between
from crlbench.report.select import Record
from crlbench.site.context import run_page, run_page_context, suite_page
from crlbench.store import safe_names

ASSETS = ("site.css", "sort.js")
MARKER = ".crlbench-site"  # in every folder `crlbench site` writes


def check_output(output: Path, store: Path) -> None:
    """UserError unless `output` is a folder `crlbench site` may replace: new, empty, or a
    site it wrote; never the store, a folder holding it, or a folder inside it but its own
    `site/` (the store's readers would take the pages' record copies for records)."""
    output, store = Path(output).resolve(), Path(store).resolve()
    if output == store or store.is_relative_to(output):
        raise UserError(f"--output {output} is or holds the results store {store}; choose a "
                        "folder of its own (default <results.dir>/site)")
    if output.is_relative_to(store) and output != store / "site":
        raise UserError(f"--output {output} is inside the results store {store}, whose "
                        "readers would take the site's record copies for records; use "
                        f"{store / 'site'} or a folder outside the store")
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file, not a folder")
    if output.is_dir() and any(output.iterdir()) and not (output / MARKER).is_file():
        raise UserError(f"--output {output} is a folder that crlbench site did not write; "
                        "it would be replaced whole: choose a new or empty folder")


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files("crlbench.site") / "templates")),
        autoescape=jinja2.select_autoescape(("html",)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["repr"] = repr  # a float as the shortest text that reads back to itself
    return env


def _version() -> str:
    from crlbench import __version__

    return __version__


def _figures(records: list[Record], suite: str, folder: Path) -> tuple[list[dict], dict[str, str]]:
    from crlbench.report.figures import make_figures
    from crlbench.report.page import FIGURE_CAPTIONS

    made = make_figures(records, "all", folder / "figures", suite)
    shown = [{"kind": kind, "src": f"figures/{png.name}", "pdf": f"figures/{pdf.name}",
              "caption": FIGURE_CAPTIONS.get(kind, kind)}
             for kind, (png, pdf) in made.written.items()]
    return shown, made.skipped


def _run_curves(record: Record, folder: Path) -> str | None:
    from crlbench.report.plot import run_figure

    try:
        fig = run_figure(record)
    except UserError:
        return None  # a run without history (the raw floor, a failed run) has no curves
    name = f"{record['run_id']}_training.svg"
    # no date in the SVG, so the same record gives the same bytes
    fig.savefig(folder / name, metadata={"Date": None})
    return name


def build_site(by_suite: dict[str, list[Record]], source: Callable[[Record], Path],
               output: Path, descriptions: dict[str, str | None], *,
               figures: bool = True) -> list[str]:
    """Write the site of `by_suite` (suite -> its records) into `output`, replacing what is
    there; `source(record)` is the record's file, copied beside its page. `descriptions`:
    suite -> the text under its title. Returns notes: the records left out, the figures that
    could not be drawn."""
    output = Path(output)
    staging, old = (output.with_name(f".{output.name}.{part}") for part in ("partial", "old"))
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    notes = []
    kept: dict[str, list[Record]] = {}
    for suite, records in by_suite.items():
        for record in records:
            if safe_names(record):
                kept.setdefault(suite, []).append(record)
            else:
                notes.append(f"left out a record of {source(record)}: its suite, method, "
                             "dataset or run_id is not a plain name")
    try:
        notes += _write_site(staging, kept, source, descriptions, figures)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if output.exists():
        output.rename(old)
    staging.rename(output)
    shutil.rmtree(old, ignore_errors=True)
    return notes


def _write_site(staging: Path, by_suite: dict[str, list[Record]],
                source: Callable[[Record], Path], descriptions: dict[str, str | None],
                figures: bool) -> list[str]:
    env = _environment()
    common = {"version": _version()}
    (staging / "assets").mkdir(parents=True)
    (staging / MARKER).write_text("written by crlbench site; the next build replaces this "
                                  "folder whole\n")
    for asset in ASSETS:
        (staging / "assets" / asset).write_bytes(
            (files("crlbench.site") / "assets" / asset).read_bytes())
    notes: list[str] = []
    overview = []
    for suite, records in by_suite.items():
        folder = staging / suite
        (folder / "runs").mkdir(parents=True)
        page = suite_page(records, suite, descriptions.get(suite))
        shown: list[dict] = []
        if figures and page["counts"]["ok"]:
            shown, skipped = _figures(records, suite, folder)
            notes += [f"{suite}: no {kind} figure: {why}" for kind, why in skipped.items()]
        (folder / "index.html").write_text(
            env.get_template("suite.html").render(page=page, figures=shown, root="../",
                                                  **common))
        for record in records:
            target = folder / run_page(record)
            curves = _run_curves(record, target.parent) if figures else None
            target.write_text(env.get_template("run.html").render(
                page=run_page_context(record), curves=curves, root="../../", **common))
            shutil.copyfile(source(record), target.with_suffix(".json"))
        overview.append(_overview(suite, page, records))
    (staging / "index.html").write_text(
        env.get_template("index.html").render(suites=overview, root="", **common))
    return notes


def _overview(suite: str, page: dict, records: Iterable[Record]) -> dict:
    return {"suite": suite, "description": page["description"], "ok": page["counts"]["ok"],
            "failed": page["counts"]["failed"], "datasets": [t["dataset"] for t in page["tables"]],
            "made": made_between(records) or ""}
