"""Who may reach which notebook through the proxy: one-time grants and access sessions.

The portal's Open makes a **grant** (``create_grant``): a random token, good once, for one
minute, for one renter's running notebook replica, tied to the portal sign-in that made
it (its ``login_id``, kept in the portal session). The notebook origin redeems it
(``redeem_grant``) for an **access session**: another random token, in an HttpOnly cookie
of the notebook origin, good for ``ACCESS_HOURS`` while that sign-in lasts (signing out
deletes it: ``end_login``) and while the user's ``session_nonce`` is unchanged (a
password reset or a disable ends it too). Only SHA-256 hashes of both tokens are stored.

Every proxied request and every open WebSocket asks ``target`` whether the replica is the
user's notebook replica and runs: another renter's (or no such replica) is refused with
403, one that does not run with 503. The Jupyter token (``Task.secret``) leaves this
module only inside a ``Target``, for the proxy to put in an ``Authorization`` header.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask_babel import lazy_gettext as _l

from portal.db import database
from portal.models import NotebookAccess, NotebookGrant, Replica, Task, User, utcnow

GRANT_SECONDS = 60
ACCESS_HOURS = 24
MAX_TOKEN = 128  # longer input is no token of ours: do not hash arbitrary amounts of it
MAX_ID = 2**63


class Refused(Exception):
    """The proxy says no: ``status`` (403, 404, 503…) and a ``message`` for the page."""

    def __init__(self, status, message):
        super().__init__(str(message))
        self.status = status
        self.message = message


EXPIRED = _l("This link to the notebook has expired or was used already. Open the notebook "
             "again from Hourglass.")
FORBIDDEN = _l("This notebook is not yours.")
NOT_RUNNING = _l("This notebook is not running. Start it again from Hourglass.")


@dataclass(frozen=True)
class Target:
    """Where a replica's JupyterLab answers and its token: for the proxy only."""

    replica_id: int
    address: str
    secret: str = ""

    def __repr__(self):  # never the token, whatever prints this
        return f"Target(replica_id={self.replica_id}, address={self.address!r})"


def digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def new_login_id():
    """A random id for one portal sign-in (kept in its session)."""
    return secrets.token_urlsafe(16)


def _token_ok(token):
    return isinstance(token, str) and 0 < len(token) <= MAX_TOKEN and token.isascii()


def target(user_id, replica_id):
    """The ``Target`` of replica ``replica_id`` for user ``user_id``. Raises Refused: 403
    when it is not that user's notebook replica (or none at all), 503 when it does not run
    or has no address yet."""
    row = None
    if isinstance(replica_id, int) and 0 < replica_id < MAX_ID:
        row = (Replica.select(Replica, Task).join(Task)
               .where(Replica.id == replica_id).first())
    if row is None or row.task.user_id != user_id or row.task.kind != "notebook":
        raise Refused(403, FORBIDDEN)
    if row.task.deleted or row.state != "running" or not row.address or not row.task.secret:
        raise Refused(503, NOT_RUNNING)
    return Target(replica_id=row.id, address=row.address, secret=row.task.secret)


def create_grant(user, replica, login_id, origin):
    """A one-time grant for ``user`` to enter ``replica`` (their running notebook replica,
    checked by the caller) from the portal sign-in ``login_id`` at ``origin``
    (``scheme://host[:port]``); returns its token, which only the caller ever sees.
    Expired grants and access sessions are tidied away meanwhile."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with database.atomic():
        NotebookGrant.delete().where(NotebookGrant.expires_at < now).execute()
        NotebookAccess.delete().where(NotebookAccess.expires_at < now).execute()
        NotebookGrant.create(token_hash=digest(token), user=user, replica=replica,
                             login_id=login_id, origin=origin.lower(), created_at=now,
                             expires_at=now + timedelta(seconds=GRANT_SECONDS))
    return token


def redeem_grant(token, origin):
    """Use grant ``token``, sent from ``origin`` (the request's Origin header, or None);
    returns (access session token, replica id). Raises Refused: the grant is unknown,
    used, expired, or came from another origin than the portal page that made it (403);
    its replica is no longer the user's running notebook replica (403, 503)."""
    if not _token_ok(token):
        raise Refused(403, EXPIRED)
    now = utcnow()
    with database.atomic():
        grant = NotebookGrant.get_or_none(NotebookGrant.token_hash == digest(token))
        used = grant is not None and NotebookGrant.update(used=True).where(
            NotebookGrant.id == grant.id, NotebookGrant.used == False,  # noqa: E712
            NotebookGrant.expires_at > now).execute()
    if not used:
        raise Refused(403, EXPIRED)
    if origin is not None and origin.lower() != grant.origin:
        raise Refused(403, EXPIRED)
    user = User.get_or_none(User.id == grant.user_id)
    if user is None or not user.active:
        raise Refused(403, FORBIDDEN)
    target(user.id, grant.replica_id)
    access = secrets.token_urlsafe(32)
    NotebookAccess.create(token_hash=digest(access), user=user, login_id=grant.login_id,
                          nonce=user.session_nonce, created_at=now,
                          expires_at=now + timedelta(hours=ACCESS_HOURS))
    return access, grant.replica_id


def session_of(token):
    """The live access session (``NotebookAccess`` with its ``user``) of cookie value
    ``token``, or None: unknown, expired, ended by signing out, or the user disabled or
    their password reset since."""
    if not _token_ok(token):
        return None
    row = (NotebookAccess.select(NotebookAccess, User).join(User)
           .where(NotebookAccess.token_hash == digest(token),
                  NotebookAccess.expires_at > utcnow()).first())
    if row is None or not row.user.active or row.user.session_nonce != row.nonce:
        return None
    return row


def session_alive(session_id, nonce):
    """Whether access session ``session_id`` (made with user nonce ``nonce``) still holds."""
    row = (NotebookAccess.select(NotebookAccess, User).join(User)
           .where(NotebookAccess.id == session_id, NotebookAccess.expires_at > utcnow())
           .first())
    return row is not None and row.user.active and row.user.session_nonce == nonce


def end_session(token):
    """Forget the access session of cookie value ``token`` (a browser entering anew)."""
    if _token_ok(token):
        NotebookAccess.delete().where(NotebookAccess.token_hash == digest(token)).execute()


def end_login(login_id):
    """The portal sign-in ``login_id`` ended: delete its access sessions and grants, so its
    notebook tabs lose access (open WebSockets within ``bridge.CHECK_SECONDS``)."""
    if not login_id:
        return 0
    with database.atomic():
        NotebookGrant.delete().where(NotebookGrant.login_id == login_id).execute()
        return NotebookAccess.delete().where(NotebookAccess.login_id == login_id).execute()
