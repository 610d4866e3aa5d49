"""What TensorBoard shows of a run and of a sweep.

- `TensorBoardLogger` (conf/logger/tensorboard.yaml): Lightning's logger, except that a per-unit
  figure (`test/kl_dim_{j}`) goes in as one bar image (`test/kl_per_unit`) and a flag
  (`test/likelihood_on_binarized`) not at all: as scalars they would be HParams columns, dozens of
  them. `trainer.test()` still returns them, so metrics.json keeps every one. Each run also gets
  the custom-scalars layout: train and val of the loss and of each of its parts on one chart.
- `write_hparams`: a run's HParams session (its row), with an experiment summary (the columns)
  when the run is not a sweep's job.
- `write_sweep_board`: at a sweep's end (`aelab.report.report`), an event file in the sweep folder
  with the experiment summary of the whole sweep, swept hyper-parameters first and the headline
  metrics only, and the report's plots as images.

TensorBoard takes the HParams columns from an experiment summary where it finds one (any run;
with several, one of them), else it makes them up from every session's hparams and every
scalar tag (`epoch`, `lr-Adam`, ...). Its server lists the hparams marked `differs` first.
"""

from __future__ import annotations

import io
import re
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pytorch_lightning import loggers as pl_loggers
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from aelab.run.atomic import write_atomic

# per-unit figures: `<stage>/<name>_dim_<unit>`, one image `<stage>/<name>_per_unit` per run
PER_UNIT = re.compile(r"^(?P<base>[^/]+/\w+?)_dim_(?P<unit>\d+)$")
# figures that say how a run was scored, not how well: an hparam, not a metric column
FLAGS = ("test/likelihood_on_binarized",)
# train vs val on one chart each: the loss and the parts of it a model logs
LAYOUT_PARTS = ("loss", "recon", "kl")
LAYOUT_CATEGORY = "train vs val"
# the sweep's own event file: `tensorboard --logdir <sweep>` reads it as the run `.`
SWEEP_EVENTS_SUFFIX = ".aelab-sweep"


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


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", png[16:24])


def image_summary(tag: str, png: bytes) -> summary_pb2.Summary:
    """A TensorBoard image summary holding the PNG as it is (no re-encoding)."""
    width, height = _png_size(png)
    image = summary_pb2.Summary.Image(
        height=height, width=width, colorspace=4, encoded_image_string=png
    )
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, image=image)])


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


def headline_metrics(metrics: Iterable[Mapping[str, Any]]) -> list[str]:
    """The metric columns: the last validation loss, the test loss and the report's headline
    test figures (`aelab.report.HEADLINE`), those some run has, in that order."""
    from aelab.report import HEADLINE  # the report imports this module

    present = {k for m in metrics for k in m}
    return [k for k in ("val/loss", "test/loss", *HEADLINE) if k in present]


def hparams_with_flags(row: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The HParams row (`aelab.run.record.hparams_row`) and the run's flags
    (`likelihood_on_binarized`: true or false), which are no metric."""
    flags = {f.split("/", 1)[1]: bool(metrics[f]) for f in FLAGS if f in metrics}
    return {**row, **flags}


def _data_type(values: Sequence[Any]) -> int:
    if all(isinstance(v, bool) for v in values):
        return api_pb2.DATA_TYPE_BOOL
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return api_pb2.DATA_TYPE_FLOAT64
    if all(isinstance(v, str) for v in values):
        return api_pb2.DATA_TYPE_STRING
    return api_pb2.DATA_TYPE_UNSET


def _hparams_summary(tag: str, **content: Any) -> summary_pb2.Summary:
    data = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **content)
    plugin = summary_pb2.SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()
    )
    value = summary_pb2.Summary.Value(
        tag=tag, metadata=summary_pb2.SummaryMetadata(plugin_data=plugin)
    )
    return summary_pb2.Summary(value=[value])


def _value(value: Any) -> struct_pb2.Value:
    # a bool first: it is an int too (torch's `hparams()` writes it as the number 0 or 1)
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, int | float):
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=str(value))


def session_summaries(row: Mapping[str, Any]) -> list[summary_pb2.Summary]:
    """A completed run's HParams session: its start (the row's values) and its end."""
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for key, value in row.items():
        start.hparams[key].CopyFrom(_value(value))
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    return [
        _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start),
        _hparams_summary(metadata.SESSION_END_INFO_TAG, session_end_info=end),
    ]


def experiment_summary(
    rows: Sequence[Mapping[str, Any]], metric_tags: Sequence[str], swept: Sequence[str] = ()
) -> summary_pb2.Summary:
    """The HParams columns: `swept` first (marked `differs`, which TensorBoard lists first), the
    other keys of the rows after, then the metrics.

    No value domains: TensorBoard's table filters rows by a domain, and under a logdir holding
    several sweeps it shows one sweep's columns for all (a domain would hide the others' rows).
    """
    keys = list(dict.fromkeys([*swept, *(k for r in rows for k in r)]))
    infos = [
        api_pb2.HParamInfo(
            name=k, type=_data_type([r[k] for r in rows if k in r]), differs=k in swept
        )
        for k in keys
    ]
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in metric_tags]
    experiment = api_pb2.Experiment(
        hparam_infos=infos, metric_infos=metrics, time_created_secs=time.time()
    )
    return _hparams_summary(metadata.EXPERIMENT_TAG, experiment=experiment)


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


def swept_keys(rows: Sequence[Mapping[str, Any]], variables: Sequence[str]) -> list[str]:
    """The report's swept variables (`aelab.report.sweep_variables`: seed aside) and the seed
    where the jobs' seeds differ."""
    seeds = {repr(r.get("seed")) for r in rows}
    return [*variables, *(["seed"] if len(seeds) > 1 and "seed" not in variables else [])]


def _events(summaries: Iterable[summary_pb2.Summary], step: int = 0) -> Iterable[bytes]:
    now = time.time()
    yield event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString()
    for summary in summaries:
        yield event_pb2.Event(wall_time=now, step=step, summary=summary).SerializeToString()


def write_sweep_board(
    sweep: Path,
    jobs: Sequence[Any],
    variables: Sequence[str],
    plots: Sequence[Path] = (),
) -> Path | None:
    """The sweep's HParams columns and its report's plots (`report/<name>` images), in one event
    file in the sweep folder; a report made again replaces it. None (nothing written) when no job
    wrote TensorBoard events (`logger=csv`, no job ran yet).

    `jobs`: `aelab.report.Job`s (hparams, metrics, status, path); `variables`: the report's
    swept variables; `plots`: the report's PNG files (those of `aelab.report.PLOTS` are logged).
    Raises OSError when the sweep folder cannot be written.
    """
    from aelab.report import PLOTS  # the report imports this module

    if not any(next(j.path.rglob("*tfevents*"), None) for j in jobs):
        return None
    rows = [hparams_with_flags(j.hparams, j.metrics) for j in jobs if j.hparams]
    completed = [j.metrics for j in jobs if j.status == "completed"]
    summaries = [experiment_summary(rows, headline_metrics(completed), swept_keys(rows, variables))]
    for plot in plots:
        if plot.name in PLOTS:
            summaries.append(image_summary(f"report/{plot.stem}", plot.read_bytes()))
    old = [p for p in sweep.iterdir() if p.name.endswith(SWEEP_EVENTS_SUFFIX)]
    path = sweep / f"events.out.tfevents.{time.time():.6f}{SWEEP_EVENTS_SUFFIX}"
    buffer = io.BytesIO()
    records = RecordWriter(buffer)
    for event in _events(summaries):
        records.write(event)
    # a temp name without `tfevents`: TensorBoard never reads half a file
    write_atomic(path, buffer.getvalue(), suffix=".tmp", prefix=".board.")
    for stale in old:  # one sweep summary: TensorBoard would take the first one it read
        if stale != path:
            stale.unlink(missing_ok=True)
    return path
