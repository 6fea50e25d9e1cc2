"""The renter's area under ``/renter``: the blueprint (``blueprint``) and the modules that
put their pages on it, loaded here; the menu's placeholders go on last."""

from portal.renter import billing, console, notebooks, overview, replicas, tasks  # noqa: F401
from portal.renter.blueprint import area

area.register_placeholder()
