"""The "paper / aelab / difference" table of a reference preset, written beside a run's
metrics.json (`reference.csv`, `reference.md`) and, for a sweep, over all its jobs in the sweep
folder."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from aelab.checks import ConfigError
from aelab.reference.published import FIGURES, PAPERS
from aelab.report.tables import _md_table
from aelab.run.atomic import write_atomic

COLUMNS = ["row", "metric", "paper", "aelab", "difference", "unit", "source"]
TABLE_CSV, TABLE_MD = "reference.csv", "reference.md"


def check_paper(paper: str) -> str:
    """`paper` if aelab holds its figures. Raises ConfigError naming the known ones."""
    if paper not in FIGURES:
        raise ConfigError("paper", paper, f"one of {', '.join(sorted(FIGURES))}")
    return paper


def compare(
    paper: str, measured: Mapping[tuple[str, str], float], rows: Iterable[str] | None = None
) -> pd.DataFrame:
    """One line per published figure of `paper` (those of `rows` only, when given): the paper's
    value, aelab's from `measured[(row, metric)]` (NaN where aelab has none: not reproduced),
    and aelab's minus the paper's, in the figure's unit; then aelab's figures the paper does not
    give (its paper column NaN).

    Raises ConfigError for an unknown `paper`."""
    wanted = None if rows is None else set(rows)
    lines = []
    for fig in FIGURES[check_paper(paper)]:
        if wanted is not None and fig.row not in wanted:
            continue
        ours = measured.get((fig.row, fig.metric), math.nan)
        lines.append([fig.row, fig.metric, fig.value, ours, ours - fig.value, fig.unit, fig.source])
    published = {(f.row, f.metric) for f in FIGURES[paper]}
    for (row, metric), ours in measured.items():  # aelab's figures the paper does not give
        if (row, metric) not in published and (wanted is None or row in wanted):
            lines.append([row, metric, math.nan, ours, math.nan, "", "aelab only"])
    return pd.DataFrame(lines, columns=COLUMNS)


def markdown(paper: str, table: pd.DataFrame) -> str:
    """The table as Markdown under the paper's title: aelab's NaN reads "not reproduced", the
    paper's (a figure it does not give) and a difference without both read "—"."""
    shown = table.astype(object)
    for col, missing in (("paper", "—"), ("aelab", "not reproduced"), ("difference", "—")):
        shown[col] = [missing if pd.isna(v) else f"{v:.6g}" for v in table[col]]
    lines = _md_table(COLUMNS, list(shown.itertuples(index=False)))
    return f"# {PAPERS[paper]}\n\n" + "\n".join(lines) + "\n"


def write_table(folder: str | Path, paper: str, table: pd.DataFrame) -> Path:
    """`reference.csv` and `reference.md` in `folder`, each written atomically; returns the csv."""
    folder = Path(folder)
    write_atomic(folder / TABLE_MD, markdown(paper, table))
    return write_atomic(folder / TABLE_CSV, table.to_csv(index=False))


def sweep_table(sweep_dir: str | Path, paper: str) -> pd.DataFrame:
    """The tables of every job under `sweep_dir` (one level down) as one, in the paper's order;
    a job without one (not finished) adds nothing."""
    parts = [pd.read_csv(p) for p in sorted(Path(sweep_dir).glob(f"*/{TABLE_CSV}"))]
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(parts, ignore_index=True).drop_duplicates(["row", "metric"], keep="last")
    order = {(f.row, f.metric): i for i, f in enumerate(FIGURES[check_paper(paper)])}
    key = [
        order.get((r, m), len(order)) for r, m in zip(table["row"], table["metric"], strict=True)
    ]
    return table.assign(_order=key).sort_values("_order").drop(columns="_order")
