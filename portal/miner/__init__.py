"""The miner's area under ``/miner``: the blueprint (``blueprint``) and the modules that put
their pages on it, loaded here; the menu's placeholders go on last."""

from portal.miner import billing, images, nodes, overview, pools, resources, specs, users  # noqa: F401
from portal.miner.blueprint import area

area.register_placeholder()
