"""What a renter sees of a notebook: the notebook with its latest run (``NotebookView``),
which of Start, Stop and Delete apply, and when its pool's idle culling stops it
(``IdleCulling``). Read-only: ``portal.notebooks`` writes.
"""

import math
from dataclasses import dataclass
from datetime import timedelta

from portal.models import Notebook, PoolLimit, Task, utcnow
from portal.task_views import TaskView, views_of


@dataclass
class NotebookView:
    """A notebook and its latest run (``portal.task_views.TaskView``, or None before the
    first start), and which of Start, Stop and Delete apply."""

    notebook: Notebook
    run: TaskView | None = None
    answering: frozenset | None = None  # replica ids whose JupyterLab answered; None: not asked

    @property
    def state(self):
        """The latest run's state; None when it never ran."""
        return self.run.state if self.run else None

    @property
    def running(self):
        """Whether the latest run has a replica not ended."""
        return self.run is not None and not self.run.ended

    @property
    def stopping(self):
        return self.run is not None and self.run.stopping

    @property
    def can_stop(self):
        return self.run is not None and self.run.can_stop

    @property
    def can_start(self):
        """Start, like Delete, applies to a notebook that does not run."""
        return not self.running

    can_delete = can_start

    @property
    def cost(self):
        """Micro-units the latest run has been charged so far (``TaskView.cost``)."""
        return self.run.cost if self.run else 0

    @property
    def culling(self):
        """``IdleCulling`` of the running run when its pool stops idle notebooks, else None."""
        if not self.running or self.stopping:
            return None
        return idle_culling(self.run.task, [item.replica for item in self.run.replicas])


@dataclass(frozen=True)
class IdleCulling:
    """A pool's idle culling as a run sees it: after ``minutes`` idle it stops, in about
    ``minutes_left`` (rounded up) counted from the last activity the scheduler saw."""

    minutes: int
    minutes_left: int


def idle_culling(run, replicas, now=None):
    """The ``IdleCulling`` of ``run`` (a notebook ``Task``) with ``replicas`` (its rows), or
    None when its pool does not stop idle notebooks. Before any activity was seen, the whole
    idle time is left."""
    minutes = (PoolLimit.select(PoolLimit.cull_idle_minutes)
               .where(PoolLimit.pool == run.pool_id).scalar())
    if not minutes or minutes <= 0:
        return None
    seen = [r.last_activity_at for r in replicas
            if r.state == "running" and r.last_activity_at is not None]
    if not seen:
        return IdleCulling(minutes, minutes)
    left = max(seen) + timedelta(minutes=minutes) - (now or utcnow())
    return IdleCulling(minutes, max(0, math.ceil(left.total_seconds() / 60)))


def _latest_runs(notebooks, events):
    ids = [notebook.id for notebook in notebooks]
    latest = {}
    for run in Task.select().where(Task.notebook.in_(ids)).order_by(Task.id):
        latest[run.notebook_id] = run
    views = views_of(list(latest.values()), events=events) if latest else []
    return {view.task.notebook_id: view for view in views}


def notebook_views(user):
    """``user``'s notebooks that are not deleted, newest first, each with its latest run."""
    notebooks = list(Notebook.select().where(Notebook.user == user,
                                             Notebook.deleted == False)  # noqa: E712
                     .order_by(Notebook.created_at.desc(), Notebook.id.desc()))
    runs = _latest_runs(notebooks, events=False)
    return [NotebookView(notebook, runs.get(notebook.id)) for notebook in notebooks]


def notebook_view(notebook, events=True):
    """One notebook with its latest run, transitions included unless ``events`` is false."""
    return NotebookView(notebook, _latest_runs([notebook], events=events).get(notebook.id))
