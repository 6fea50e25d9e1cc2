"""Signals from the portal to whoever listens (the scheduler, wired in ``app.py``).

The portal never imports the scheduler; it says what happened and the
scheduler reacts at once instead of at its next period.
"""

from blinker import Namespace

_signals = Namespace()

#: The miner added, removed, enabled or disabled a node: discover again now.
nodes_changed = _signals.signal("nodes-changed")

#: A renter submitted, stopped or deleted a task: place, stop or clean up now.
tasks_changed = _signals.signal("tasks-changed")
