"""What TensorBoard shows of a run: Lightning's logger, and the run's HParams row.

- `TensorBoardLogger` (conf/logger/tensorboard.yaml): Lightning's logger, except that a per-unit
  figure (`test/kl_dim_{j}`) goes in as one bar image (`test/kl_per_unit`) and a flag
  (`test/likelihood_on_binarized`) not at all: as scalars they would be HParams columns, dozens of
  them. `trainer.test()` still returns them, so metrics.json keeps every one. Each run also gets
  the custom-scalars layout: train and val of the loss and of each of its parts on one chart.
- `write_hparams`: a run's HParams session (its row), with an experiment summary (the columns)
  when the run is not a sweep's job.

The sweep's own event file, and the summaries both write, are `aelab.board.summaries`'s (no
Lightning there: `aelab-report` writes it).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pytorch_lightning import loggers as pl_loggers
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from aelab.board.summaries import (
    experiment_summary,
    headline_metrics,
    image_summary,
    session_summaries,
)
from aelab.metric_names import FLAGS

# per-unit figures: `<stage>/<name>_dim_<unit>`, one image `<stage>/<name>_per_unit` per run
PER_UNIT = re.compile(r"^(?P<base>[^/]+/\w+?)_dim_(?P<unit>\d+)$")
# train vs val on one chart each: the loss and the parts of it a model logs
LAYOUT_PARTS = ("loss", "recon", "kl")
LAYOUT_CATEGORY = "train vs val"


def split_metrics(
    metrics: Mapping[str, Any],
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The scalars TensorBoard gets, and the per-unit figures as one list per tag (unit order);
    flags are in neither."""
    scalars: dict[str, float] = {}
    units: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        found = PER_UNIT.match(key)
        if found:
            units.setdefault(f"{found['base']}_per_unit", {})[int(found["unit"])] = float(value)
        elif key not in FLAGS:
            scalars[key] = value
    return scalars, {tag: [v[j] for j in sorted(v)] for tag, v in units.items()}


def per_unit_png(tag: str, values: Sequence[float]) -> bytes:
    """A bar chart of the values by unit (the KL of each latent unit, nats), as PNG bytes."""
    n = len(values)
    fig = Figure(figsize=(min(12.0, 2.5 + 0.12 * n), 3.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(n), values, width=0.8)
    ax.set_xlabel("latent unit")
    ax.set_ylabel("nats")
    ax.set_title(f"{tag}: sum {sum(values):.4g} over {n} units", fontsize=9)
    if n <= 16:
        ax.set_xticks(range(n))
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def layout(parts: Iterable[str]) -> dict[str, dict[str, list[Any]]]:
    """The custom-scalars layout (`SummaryWriter.add_custom_scalars`): one multiline chart per
    part, its tags a regex matching `train/<part>` and `val/<part>`."""
    charts = {p: ["Multiline", [rf"^(train|val)/{re.escape(p)}$"]] for p in parts}
    return {LAYOUT_CATEGORY: charts}


class TensorBoardLogger(pl_loggers.TensorBoardLogger):
    """Lightning's TensorBoard logger; per-unit figures as one bar image per tag and step, flags
    left out (metrics.json and the HParams row have them), and the custom-scalars layout of the
    loss parts the run logs, written with the first train or val figures."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._layout_written = False

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        scalars, per_unit = split_metrics(metrics)
        if not self._layout_written:
            parts = [p for p in LAYOUT_PARTS if f"train/{p}" in scalars or f"val/{p}" in scalars]
            if parts:
                self.experiment.add_custom_scalars(layout(parts))
                self._layout_written = True
        if scalars:
            super().log_metrics(scalars, step)
        for tag, values in per_unit.items():
            self.experiment._get_file_writer().add_summary(
                image_summary(tag, per_unit_png(tag, values)), step
            )


# --- HParams ----------------------------------------------------------------------------------


def write_hparams(
    logger: pl_loggers.TensorBoardLogger,
    row: Mapping[str, Any],
    metrics: Mapping[str, Any],
    experiment: bool,
) -> None:
    """The run's HParams session (start and end: its row), and with `experiment` its columns:
    the row's keys and the headline metrics it has.

    A sweep's job writes no columns: the sweep writes them over all its jobs when it ends
    (`write_sweep_board`), and one job's would stand for all jobs until then.
    """
    writer = logger.experiment._get_file_writer()
    summaries = session_summaries(row)
    if experiment:
        summaries.insert(0, experiment_summary([row], headline_metrics([metrics])))
    for summary in summaries:
        writer.add_summary(summary)
    writer.flush()


def drop_unused_event_files(logger: Any) -> None:
    """Close a TensorBoard logger's writer and delete the event files this process opened in
    its folder that hold no summary (only the header). Other loggers: nothing.

    Lightning opens a writer in `fit`'s setup even when nothing follows: a finished run resumed
    would otherwise gain an event file with only its header.
    """
    if not isinstance(logger, pl_loggers.TensorBoardLogger) or logger._experiment is None:
        return
    logger.experiment.close()
    # tensorboard names a file events.out.tfevents.<time>.<host>.<pid>.<n>
    for path in Path(logger.log_dir).glob(f"events.out.tfevents.*.{os.getpid()}.*"):
        if all(e.WhichOneof("what") == "file_version" for e in EventFileLoader(str(path)).Load()):
            path.unlink(missing_ok=True)
