"""The Prometheus Hourglass reads: ``PROMETHEUS_URL``, else the one ``make monitoring``
started for this instance (stub until built)."""


def prometheus_url(app):
    """The base URL of the Prometheus to query, or "" when there is none."""
    return app.config["PROMETHEUS_URL"]
