"""The renter's area under ``/renter``: the blueprint (``blueprint``) and the modules that
put their pages on it, loaded here; the menu's placeholders go on last."""

from portal.renter import (  # noqa: F401
    algorithms,
    billing,
    console,
    datasets,
    files,
    images,
    metrics,
    notebooks,
    overview,
    replicas,
    tasks,
    templates,
)
from portal.renter.blueprint import area

area.register_placeholder()
