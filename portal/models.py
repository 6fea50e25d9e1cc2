"""peewee models. Times are naive UTC datetimes; use ``utcnow()``.

Later issues add the rest of the vocabulary (nodes, specs, tasks, ledger);
here are users, groups and the scheduler's leader lease.
"""

import secrets
from datetime import UTC, datetime

from flask_login import UserMixin
from peewee import (
    BooleanField,
    CharField,
    CompositeKey,
    DateTimeField,
    ForeignKeyField,
    Model,
)

from portal.db import database

ROLES = ("miner", "renter")


def utcnow():
    """Now, as a naive UTC datetime (what every DateTimeField here stores)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_session_nonce():
    return secrets.token_urlsafe(16)


class BaseModel(Model):
    class Meta:
        database = database


class User(UserMixin, BaseModel):
    """A miner or a renter. ``session_nonce`` is part of the login cookie:
    changing it (password reset, disable) ends every session of the user."""

    name = CharField(max_length=64, unique=True)
    display_name = CharField(max_length=128, default="")
    role = CharField(max_length=16, choices=[(r, r) for r in ROLES])
    password_hash = CharField(max_length=256)
    active = BooleanField(default=True)
    locale = CharField(max_length=16, null=True)
    session_nonce = CharField(max_length=64, default=new_session_nonce)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "users"

    def get_id(self):
        return f"{self.id}:{self.session_nonce}"

    @property
    def is_active(self):
        return self.active

    @property
    def label(self):
        return self.display_name or self.name


class Group(BaseModel):
    """A user group; resource pools are bound to groups."""

    name = CharField(max_length=64, unique=True)
    description = CharField(max_length=256, default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "groups"


class Membership(BaseModel):
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    group = ForeignKeyField(Group, backref="memberships", on_delete="CASCADE")

    class Meta:
        table_name = "memberships"
        primary_key = CompositeKey("user", "group")


class LeaderLease(BaseModel):
    """Who runs the scheduler for this database, until when, and its last tick."""

    name = CharField(max_length=32, primary_key=True)
    holder = CharField(max_length=128)
    expires_at = DateTimeField()
    last_tick_at = DateTimeField(null=True)

    class Meta:
        table_name = "leader_lease"


MODELS = [User, Group, Membership, LeaderLease]
