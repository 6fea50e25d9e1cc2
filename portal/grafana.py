"""Grafana, when the lab has one (``GRAFANA_URL`` and ``GRAFANA_TOKEN``): stub until built."""


def panels(dashboard, **variables):
    """Embed URLs of ``dashboard``'s panels ("cluster", or "task" with ``task=<id>``); ``[]``
    when no Grafana is configured."""
    return []
