"""The TensorBoard files aelab writes itself, from tensorboard's protos (no Lightning, no torch:
`aelab-report` writes them).

- `write_sweep_board`: at a sweep's end (`aelab.report.cli.report`), an event file in the sweep's
  `report/` folder (TensorBoard's run `report`) with the experiment summary of the whole sweep,
  swept hyper-parameters first, the optimized metric first of the headline metrics, and the
  report's plots as images.
- a run's HParams session and experiment summary (`session_summaries`, `experiment_summary`),
  which `aelab.board.logger.write_hparams` writes into the run's own event file.

TensorBoard takes the HParams columns from an experiment summary where it finds one (any run;
with several, one of them), else it makes them up from every session's hparams and every
scalar tag (`epoch`, `lr-Adam`, ...). Its server lists the hparams marked `differs` first.
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from aelab.metric_names import FLAGS, HEADLINE
from aelab.run.atomic import write_atomic

# the sweep's own event file, in its folder `report/`: a file in the sweep folder itself would be
# the run `.` of `tensorboard --logdir <sweep>` (a report written before is moved there)
SWEEP_EVENTS_SUFFIX = ".aelab-sweep"
BOARD_DIR = "report"


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


# --- HParams ----------------------------------------------------------------------------------


def headline_metrics(
    metrics: Iterable[Mapping[str, Any]], objective: str | None = None
) -> list[str]:
    """The metric columns: the `objective` (the sweep's `optimized_metric`), the last validation
    loss, the test loss, the report's headline test figures (`aelab.metric_names.HEADLINE`) and
    the disentanglement scores (`disent/*`), those some run has, in that order."""
    present = {k for m in metrics for k in m}
    disent = sorted(k for k in present if k.startswith("disent/"))
    ordered = [objective, "val/loss", "test/loss", *HEADLINE, *disent]
    return [k for k in dict.fromkeys(ordered) if k in present]


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


def _present(job: Any, columns: Sequence[str]) -> dict[str, Any]:
    """A job's values of the columns it has (a row of `load_sweep`'s DataFrame)."""
    return {k: job[k] for k in columns if job[k] is not None and job[k] == job[k]}  # not NaN


def write_sweep_board(
    sweep: Path,
    jobs: Any,
    variables: Sequence[str],
    plots: Sequence[Path] = (),
    objective: str | None = None,
) -> Path | None:
    """The sweep's HParams columns and its report's plots (`report/<name>` images), in one event
    file in the sweep's `report/` folder; a report made again replaces it. None (nothing written)
    when no job wrote TensorBoard events (`logger=csv`, no job ran yet).

    `jobs`: `aelab.report.load_sweep`'s DataFrame; `variables`: the report's swept variables;
    `plots`: the PNG files to log as images (the report passes those of
    `aelab.report.plots.PLOTS`); `objective`: the metric the sweep optimises, its first metric
    column. Raises OSError when the sweep folder cannot be written.
    """
    if not any(next(Path(p).rglob("*tfevents*"), None) for p in jobs["path"]):
        return None
    hparams, metrics = jobs.attrs["hparams"], jobs.attrs["metrics"]
    rows = [
        hparams_with_flags(_present(job, hparams), _present(job, metrics))
        for _, job in jobs.iterrows()
        if any(job[k] is not None for k in hparams)  # an unreadable config has no row
    ]
    completed = [
        _present(job, metrics) for _, job in jobs.iterrows() if job["status"] == "completed"
    ]
    metric_tags = headline_metrics(completed, objective)
    summaries = [experiment_summary(rows, metric_tags, swept_keys(rows, variables))]
    for plot in plots:
        summaries.append(image_summary(f"report/{Path(plot).stem}", Path(plot).read_bytes()))
    board = sweep / BOARD_DIR
    board.mkdir(exist_ok=True)
    old = [p for d in (sweep, board) for p in d.iterdir() if p.name.endswith(SWEEP_EVENTS_SUFFIX)]
    path = board / f"events.out.tfevents.{time.time():.6f}{SWEEP_EVENTS_SUFFIX}"
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
