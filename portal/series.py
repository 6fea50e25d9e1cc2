"""The built-in charts' series: a node's (CPU share, memory, chips in use, its chips'
readings) and a task's (per replica CPU and memory, its chips' readings over the run).

They come from Prometheus when Hourglass has one (``prometheus_stack.prometheus_url``), else
from the sample tables the sampling job fills; when Prometheus does not answer, every chart
comes from the samples, and when it has no series for a chart, that chart does. Either way
a window of at most ``MAX_POINTS`` points: Prometheus is asked with that step, sample rows
are averaged per step-long bucket in SQL. The answer is the charts' JSON: ``{"range",
"start", "end", "running", "source", "note", "charts": [{"key", "title", "unit", "source",
"note", "x", "series": [{"label", "values"}]}]}`` (times in unix seconds; a chart with no
data has an empty ``x``; ``source`` is "prometheus" or "samples", the answer's "mixed" when
its charts with data differ; ``note`` says why a chart is not Prometheus's although there is
one).
"""

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from flask_babel import gettext as _
from peewee import SqliteDatabase, fn

from portal import prometheus
from portal.db import database
from portal.models import (
    REPLICA_ENDED,
    ChipSample,
    NodeChip,
    NodeSample,
    Replica,
    ReplicaSample,
    Subtask,
)
from portal.prometheus_stack import prometheus_url

RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}
DEFAULT_RANGE = "1h"
MAX_POINTS = 300
# the order of the charts, whichever source each comes from
ORDER = ("cpu", "memory", "chips", "chip-util", "chip-memory", "chip-temp")

# Hourglass's own gauges (portal.metrics) and node-exporter's, as Prometheus has them
CHIP_METRICS = {"util": "hourglass_chip_utilization_ratio",
                "memory": "hourglass_chip_memory_used_bytes",
                "temp": "hourglass_chip_temperature_celsius"}
# rate()'s window holds at least 4 scrapes (Prometheus scrapes every SAMPLE_SECONDS) and a step
NODE_CPU = ('1 - avg by (node)(rate(node_cpu_seconds_total{{mode="idle",node={node}}}'
            '[{seconds}s]))')
NODE_MEMORY_TOTAL = "node_memory_MemTotal_bytes{{node={node}}}"
NODE_MEMORY_USED = ("node_memory_MemTotal_bytes{{node={node}}} "
                    "- node_memory_MemAvailable_bytes{{node={node}}}")
NODE_CHIPS = "sum(hourglass_chips_held{{node={node}}})"
REPLICA_CPU = 'hourglass_replica_cpu_cores{{replica=~"{task}/.+"}}'
REPLICA_MEMORY = 'hourglass_replica_memory_bytes{{replica=~"{task}/.+"}}'


def chosen_range(value):
    """The time range a query string names (one of ``RANGES``), else the default."""
    return value if value in RANGES else DEFAULT_RANGE


def range_from(args):
    """The time range of a request's query string (``request.args``): its ``range``."""
    return chosen_range(args.get("range", ""))


def no_run():
    """The charts' JSON of a notebook that never ran: no charts."""
    return {"range": 0, "start": None, "end": None, "running": False, "source": "",
            "note": "", "charts": []}


@dataclass(frozen=True)
class Window:
    """The times a chart shows (unix seconds) and its step: ``end - start`` over at most
    ``MAX_POINTS`` steps, ``start`` a whole number of steps."""

    start: float
    end: float
    step: int

    @property
    def since(self):
        return _naive(self.start)

    @property
    def until(self):
        return _naive(self.end)


def window(range_key, end=None, begin=None):
    """The window of ``range_key`` (one of ``RANGES``; another is the default) ending at
    ``end`` (now when None), not before ``begin`` when given (a task's run)."""
    end = time.time() if end is None else end
    start = end - RANGES.get(range_key, RANGES[DEFAULT_RANGE])
    if begin is not None:
        start = min(max(start, begin), end)
    step = max(1, math.ceil((end - start) / MAX_POINTS))
    return Window(math.floor(start / step) * step, end, step)


def _naive(seconds):
    """Unix seconds as the naive UTC datetime the models store."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def unix(moment):
    """A naive UTC datetime of the models as unix seconds."""
    return moment.replace(tzinfo=UTC).timestamp()


def chart(key, title, unit, named):
    """One chart from ``named``, ``[(label, {time: value})]``: the times any series has,
    in order, and each series' value at each (None where it has none)."""
    times = sorted({t for _label, points in named for t in points})
    return {"key": key, "title": title, "unit": unit, "x": times,
            "series": [{"label": name, "values": [points.get(t) for t in times]}
                       for name, points in named]}


def _answer(win, running, charts, note=""):
    sources = ({c["source"] for c in charts if c["x"]} or {c["source"] for c in charts}
               or {"prometheus" if _url() else "samples"})
    return {"range": round(win.end - win.start), "start": win.start, "end": win.end,
            "running": running, "source": sources.pop() if len(sources) == 1 else "mixed",
            "note": note, "charts": charts}


def _url():
    return prometheus_url(current_app)


def _charts(win, running, from_prometheus, from_samples):
    """The answer of charts from Prometheus (``from_prometheus()``) when there is one, each
    that has no data there from the samples (``from_samples()``) instead, and all of them
    from the samples when there is none or it does not answer."""
    if not _url():
        return _answer(win, running, _sourced(from_samples(), "samples"))
    try:
        found = _sourced(from_prometheus(), "prometheus")
    except prometheus.PrometheusError as exc:
        note = _("Prometheus did not answer (%(reason)s): these are Hourglass's own samples.",
                 reason=str(exc))
        return _answer(win, running, _sourced(from_samples(), "samples", note), note)
    if all(c["x"] for c in found):
        return _answer(win, running, found)
    by_key = {c["key"]: c for c in found}
    note = _("Prometheus has no series for this chart: these are Hourglass's own samples.")
    for own in _sourced(from_samples(), "samples", note):
        if own["x"] and not by_key.get(own["key"], {}).get("x"):
            by_key[own["key"]] = own
    return _answer(win, running, [by_key[key] for key in ORDER if key in by_key])


def _sourced(charts, source, note=""):
    """``charts``, each saying where its figures come from and why."""
    return [{**c, "source": source, "note": note} for c in charts]


# --- a node ------------------------------------------------------------------------------


def node_charts(node, range_key):
    """The charts of ``node`` (a Node row) over the last ``range_key``."""
    win = window(range_key)
    return _charts(win, True, lambda: _node_from_prometheus(node, win),
                   lambda: _node_from_samples(node, win))


def _node_charts(cpu, used, total, held, chips):
    """The node's charts from its series (each ``{time: value}``) and its chips'
    (``{reading: [(label, {time: value})]}``)."""
    return [chart("cpu", _("CPU in use"), "ratio", [(_("CPU"), cpu)]),
            chart("memory", _("Memory"), "bytes", [(_("used"), used), (_("total"), total)]),
            chart("chips", _("Chips in use"), "count", [(_("chips held"), held)]),
            *_chip_charts(chips)]


def _chip_charts(chips):
    """A chart per chip reading that some chip has: utilisation, memory, temperature."""
    titles = {"util": (_("Chip utilisation"), "ratio"),
              "memory": (_("Chip memory used"), "bytes"),
              "temp": (_("Chip temperature"), "celsius")}
    return [chart(f"chip-{reading}", *titles[reading], named)
            for reading, named in chips.items()
            if any(value is not None for _label, points in named for value in points.values())]


def _node_from_prometheus(node, win):
    name = prometheus.label(node.name)

    def one(promql):
        found = _query(promql.format(node=name, seconds=cpu_window(win.step)), win)
        return found[0][1] if found else {}

    chips = {reading: [(chip_name(labels.get("chip", "?")), points)
                       for labels, points in _query(f"{metric}{{node={name}}}", win)]
             for reading, metric in CHIP_METRICS.items()}
    return _node_charts(one(NODE_CPU), one(NODE_MEMORY_USED), one(NODE_MEMORY_TOTAL),
                        one(NODE_CHIPS), chips)


def cpu_window(step):
    """Seconds of CPU counters a rate over ``step`` reads: at least 4 of Prometheus's scrapes
    (every SAMPLE_SECONDS) and a whole step, so that no point has fewer than 2 samples."""
    return math.ceil(max(4 * current_app.config["SAMPLE_SECONDS"], step))


def _query(promql, win):
    """``[(labels, {time: value})]`` of ``promql`` over ``win``."""
    return [(labels, {t: v for t, v in points if v is not None})
            for labels, points in prometheus.query_range(_url(), promql, win.start, win.end,
                                                         win.step)]


def _node_from_samples(node, win):
    bucket = _bucket(NodeSample.at, win.step)
    rows = (NodeSample.select(bucket, fn.AVG(NodeSample.cpu_ratio),
                              fn.AVG(NodeSample.memory_used_bytes),
                              fn.AVG(NodeSample.memory_total_bytes),
                              fn.AVG(NodeSample.chips_held))
            .where(NodeSample.node == node, NodeSample.at >= win.since,
                   NodeSample.at <= win.until)
            .group_by(bucket).tuples())
    columns = [{}, {}, {}, {}]
    for at, *readings in rows:
        for column, value in zip(columns, readings, strict=True):
            if value is not None:
                column[at * win.step] = value
    chips = _chip_samples(ChipSample.chip.in_(NodeChip.select(NodeChip.id)
                                              .where(NodeChip.node == node)), win, False)
    return _node_charts(*columns, chips)


def _bucket(field, step):
    """The SQL of ``field``'s (a time) bucket number: unix seconds // ``step``."""
    if isinstance(database.obj, SqliteDatabase):
        return fn.strftime("%s", field).cast("INTEGER") / step
    return fn.FLOOR(fn.date_part("epoch", field) / step).cast("BIGINT")


def _chip_samples(which, win, per_replica):
    """The readings of the ChipSample rows matching ``which`` in ``win``, averaged per
    bucket: ``{reading: [(label, {time: value})]}``, a series per chip, or per chip and the
    replica that held it (``per_replica``: a task's charts)."""
    bucket = _bucket(ChipSample.at, win.step)
    holder = ChipSample.replica if per_replica else ChipSample.chip
    rows = (ChipSample.select(ChipSample.chip, holder, bucket, fn.AVG(ChipSample.util_ratio),
                              fn.AVG(ChipSample.memory_used_bytes), fn.AVG(ChipSample.temp_c))
            .where(which, ChipSample.at >= win.since, ChipSample.at <= win.until)
            .group_by(ChipSample.chip, holder, bucket).tuples())
    found = {}
    for chip, held_by, at, *readings in rows:
        series = found.setdefault((chip, held_by), ({}, {}, {}))
        for points, value in zip(series, readings, strict=True):
            if value is not None:
                points[at * win.step] = value
    chips = {chip.id: chip for chip in NodeChip.select().where(
        NodeChip.id.in_([chip for chip, _held_by in found]))} if found else {}
    holders = _replicas([held_by for _chip, held_by in found]) if per_replica else {}

    def label(chip, held_by):
        own = chip_name(chips[chip].index)
        return f"{replica_name(holders[held_by])} · {own}" if per_replica else own

    order = sorted(found, key=lambda key: (chips[key[0]].index, key[1]))
    return {reading: [(label(*key), found[key][i]) for key in order]
            for i, reading in enumerate(("util", "memory", "temp"))}


def _replicas(ids):
    """Replica rows of ``ids`` with their subtasks, by id."""
    return {r.id: r for r in Replica.select(Replica, Subtask).join(Subtask)
            .where(Replica.id.in_(ids))}


# --- a task ------------------------------------------------------------------------------


def task_charts(task, range_key, now=None):
    """The charts of ``task`` (a training task or a notebook's run) over the last
    ``range_key`` of its run (the run's end, or now while it runs; never before it began)."""
    replicas = list(Replica.select(Replica, Subtask).join(Subtask)
                    .where(Replica.task == task).order_by(Subtask.role, Replica.index))
    begin, end, running = run_span(task, replicas, time.time() if now is None else now)
    win = window(range_key, end=end, begin=begin)
    return _charts(win, running, lambda: _task_from_prometheus(task, replicas, win),
                   lambda: _task_from_samples(replicas, win))


def run_span(task, replicas, now):
    """``(begin, end, running)`` of a task's run in unix seconds: its first replica's start
    (its submission before any started) to now while any replica has not ended, else to its
    last end (a replica's Podman end, else when it was last seen)."""
    starts = [r.started_ns / 1e9 for r in replicas if r.started_ns]
    begin = min(starts) if starts else unix(task.submitted_at)
    if any(r.state not in REPLICA_ENDED for r in replicas):
        return begin, max(now, begin), True
    ends = [r.finished_ns / 1e9 if r.finished_ns else unix(r.last_seen_at)
            for r in replicas if r.finished_ns or r.last_seen_at]
    return begin, max(ends + [begin + 1]), False


def replica_name(replica):
    return f"{replica.subtask.role}/{replica.index}"


def chip_name(index):
    """A chip's series label: its host chip number."""
    return _("chip %(index)s", index=index)


def _task_charts(cpu, memory, chips):
    return [chart("cpu", _("CPU (cores)"), "cores", cpu),
            chart("memory", _("Memory"), "bytes", memory),
            *_chip_charts(chips)]


def _task_from_samples(replicas, win):
    ids = [r.id for r in replicas]
    by_id = {r.id: r for r in replicas}
    bucket = _bucket(ReplicaSample.at, win.step)
    rows = (ReplicaSample.select(ReplicaSample.replica, bucket,
                                 fn.AVG(ReplicaSample.cpu_cores),
                                 fn.AVG(ReplicaSample.memory_bytes))
            .where(ReplicaSample.replica.in_(ids), ReplicaSample.at >= win.since,
                   ReplicaSample.at <= win.until)
            .group_by(ReplicaSample.replica, bucket).tuples()) if ids else []
    cpu, memory = ({rid: {} for rid in ids}, {rid: {} for rid in ids})
    for rid, at, cores, used in rows:
        if cores is not None:
            cpu[rid][at * win.step] = cores
        if used is not None:
            memory[rid][at * win.step] = used
    chips = _chip_samples(ChipSample.replica.in_(ids), win, True)
    return _task_charts([(replica_name(by_id[rid]), cpu[rid]) for rid in ids],
                        [(replica_name(by_id[rid]), memory[rid]) for rid in ids], chips)


def _task_from_prometheus(task, replicas, win):
    prefix = f"{task.id}/"

    def per_replica(promql):
        found = {labels.get("replica", ""): points
                 for labels, points in _query(promql.format(task=task.id), win)}
        return [(replica_name(r), found.get(f"{prefix}{replica_name(r)}", {}))
                for r in replicas]

    chips = {reading: [(f"{labels.get('replica', '').removeprefix(prefix)} · "
                        f"{chip_name(labels.get('chip', '?'))}", points)
                       for labels, points in sorted(
                           _query(f'{metric}{{replica=~"{task.id}/.+"}}', win),
                           key=lambda found: sorted(found[0].items()))]
             for reading, metric in CHIP_METRICS.items()}
    return _task_charts(per_replica(REPLICA_CPU), per_replica(REPLICA_MEMORY), chips)
