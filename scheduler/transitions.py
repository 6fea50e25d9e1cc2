"""A replica's moves from one state to the next, each stored with its event and reason.

Every step of the leader's pass that changes a replica's state does it here, so an ended
replica always lets go of its chips (unless it may still run: see ``transition``).
"""

from portal.db import database
from portal.models import REPLICA_ENDED, Replica, ReplicaChip, ReplicaEvent


def transition(replica, state, reason="", from_state=None, keep_chips=False, **fields):
    """Move ``replica`` to ``state`` (recording the event) unless it already ended; with
    ``from_state``, only from that state (compare-and-set). Returns whether it moved.

    An ended replica lets go of its chips, unless ``keep_chips``: a replica lost with its
    node may still run there, so it holds them until its container is confirmed gone
    (``Reconciler.release_lost``). The state, its event and the chips change in one
    transaction, so a reader never sees a state without its event."""
    current = (Replica.state == from_state) if from_state else Replica.state.not_in(REPLICA_ENDED)
    with database.atomic():
        moved = (Replica.update(state=state, reason=reason[:512], **fields)
                 .where((Replica.id == replica.id) & current).execute())
        if moved:
            ReplicaEvent.create(replica=replica.id, state=state, reason=reason[:512])
            if state in REPLICA_ENDED and not keep_chips:
                release_chips([replica.id])
    return moved


def release_chips(replica_ids):
    """Let go of the chips the replicas ``replica_ids`` hold."""
    ReplicaChip.delete().where(ReplicaChip.replica.in_(list(replica_ids))).execute()


def last_seen(replica):
    """When ``replica`` was last seen alive, as its reasons say it."""
    return f"{replica.last_seen_at:%Y-%m-%d %H:%M:%S} UTC" if replica.last_seen_at else "-"
