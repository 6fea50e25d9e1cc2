"""The miner's area under ``/miner``: the blueprint (``blueprint``) and the modules that put
their pages on it, loaded here; the menu's placeholders go on last."""

from portal.miner import (  # noqa: F401
    billing,
    images,
    monitoring,
    nodes,
    overview,
    pools,
    resources,
    slurm_clusters,
    specs,
    users,
)
from portal.miner.blueprint import area

area.register_placeholder()
