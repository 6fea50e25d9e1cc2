"""A small client of Prometheus's HTTP API: range queries for the built-in charts.

Every failure (no answer, an HTTP error, an answer that is not a matrix) is one exception,
``PrometheusError``, whose text the charts' note gives as the reason they show Hourglass's
own samples instead.
Label values that come from the database go through ``label`` before they enter a query.
"""

import math

import requests

TIMEOUT = 5  # seconds: a chart that waits longer is worse than one that says why it is empty


class PrometheusError(Exception):
    """Prometheus did not answer a query with data; the text says why."""


def label(value):
    """``value`` as a PromQL string literal (quoted, with ``\\``, ``"`` and newlines
    escaped), safe inside ``{name=...}``."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def query_range(url, promql, start, end, step):
    """``promql`` over ``start``..``end`` (unix seconds) every ``step`` seconds from the
    Prometheus at ``url``: ``[(labels, [(t, value or None), ...]), ...]``, one per series."""
    try:
        response = requests.get(f"{url}/api/v1/query_range", timeout=TIMEOUT, params={
            "query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
    except requests.RequestException as exc:
        raise PrometheusError(type(exc).__name__) from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(body.get("error") or f"HTTP {response.status_code}")
    data = body.get("data") or {}
    if data.get("resultType") != "matrix":
        raise PrometheusError(f"a {data.get('resultType')} instead of a matrix")
    return [(series.get("metric", {}), [(float(t), _number(v)) for t, v in series["values"]])
            for series in data.get("result", [])]


def _number(text):
    """A sample's value; None for NaN and infinities (JSON has no such numbers)."""
    value = float(text)
    return value if math.isfinite(value) else None
