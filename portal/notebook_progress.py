"""A notebook run's way to JupyterLab: the steps it shows while it starts (``STEPS``,
``Progress``) and which of its replicas may answer (``running_replicas``). Whether one
answers is asked by ``portal.proxy.ready``.
"""

from dataclasses import dataclass

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal.models import REPLICA_ENDED
from portal.task_views import reason_text

PLACE, CONTAINER, JUPYTER, READY = 1, 2, 3, 4
STEPS = (_l("Waiting for a place"), _l("Starting the container"),
         _l("Waiting for JupyterLab"), _l("Ready"))


def running_replicas(view):
    """``[(role, replica id)]`` of the latest run's replicas that run and have an address
    (where JupyterLab answers, once it does), by subtask."""
    if view.run is None or view.run.ended:
        return []
    return [(sub.subtask.role, item.replica.id) for sub in view.run.subtasks
            for item in sub.replicas
            if item.replica.state == "running" and item.replica.address]


@dataclass(frozen=True)
class Progress:
    """Where a run is on its way to JupyterLab: ``step`` (``PLACE`` 1 .. ``READY`` 4, named
    by ``STEPS``), that step in words (``text``), and how many of its ``replicas`` (those not
    ended) have a JupyterLab that answers (``answering``)."""

    step: int
    text: str
    answering: int
    replicas: int

    @property
    def ready(self):
        return self.step == READY

    @property
    def steps(self):
        """``[(number, label)]`` of every step, for the indicator."""
        return [(number, str(label)) for number, label in enumerate(STEPS, 1)]


def _step(replica, ready_ids):
    if replica.state == "pending":
        return PLACE
    if replica.state == "starting":
        return CONTAINER
    return READY if replica.id in ready_ids else JUPYTER


def progress(view, ready_ids=()):
    """The ``Progress`` of ``view``'s latest run, given ``ready_ids`` (the replicas whose
    JupyterLab answered); None when no run is starting or running, or it is stopping. With
    several subtasks the run is at the step of its slowest replica."""
    run = view.run
    if run is None or run.ended or run.stopping:
        return None
    live = [item.replica for item in run.replicas if item.replica.state not in REPLICA_ENDED]
    if not live:
        return None
    steps = [_step(replica, ready_ids) for replica in live]
    step = min(steps)
    if step == PLACE:
        reason = run.task.reason
        text = (_("Waiting for a place: %(reason)s", reason=reason_text(reason))
                if reason else _("Waiting for the scheduler to place it."))
    elif step == CONTAINER:
        nodes = sorted({replica.node.name for replica, at in zip(live, steps, strict=True)
                        if at == CONTAINER and replica.node_id})
        text = (_("Starting the container on node %(node)s", node=", ".join(nodes)) if nodes
                else _("Starting the container"))
    elif step == JUPYTER:
        text = _("Waiting for JupyterLab to answer")
    else:
        text = _("Ready: JupyterLab answers")
    return Progress(step=step, text=text, answering=steps.count(READY), replicas=len(live))
