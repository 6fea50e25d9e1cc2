"""The JSON API under ``/api/v1/``: the twin of every portal list and action.

``blueprint.bp`` is the blueprint. Each module of this package puts its part on it when
imported: endpoints declared with ``registry.route`` (which also records them for the
OpenAPI document), the error handlers (``errors``), the limit on refused tokens
(``auth``). The import below loads them all; a new module of endpoints joins it.
"""

from portal.api import (  # noqa: F401
    account,
    algorithms,
    billing,
    datasets,
    errors,
    images,
    my_billing,
    nodes,
    notebooks,
    openapi,
    pools,
    renter_images,
    resources,
    slurm_clusters,
    specs,
    tasks,
    templates,
    uploads,
)
