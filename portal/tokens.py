"""Personal API tokens: create, verify, list and revoke them, and the ``token`` CLI.

A token is ``hg_`` followed by 43 URL-safe characters (256 random bits). Only
its SHA-256 is stored, so the database never holds a usable token; a request
is checked by hashing what it sent and looking the hash up. ``prefix`` (the
first characters) tells tokens apart on pages. The token itself is shown once,
to the person who made it, and never logged, flashed or put in a URL.
"""

import hashlib
import secrets
from datetime import timedelta

import click
from flask_babel import gettext as _

from portal import values
from portal.db import Prepared, model_row
from portal.models import ApiToken, User, utcnow
from portal.references import delete_unused

PREFIX = "hg_"
SHOWN_CHARS = 11  # "hg_" and 8 characters: enough to recognise, far too few to guess the rest
MAX_NAME = 64
MAX_TOKEN = 128  # longer input is not a token; do not hash arbitrary amounts of it
LAST_USED_EVERY = timedelta(minutes=1)  # at most one write a minute per token


class TokenError(ValueError):
    """Bad input for a token; the message is shown to the person who typed it."""


def _digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user, name):
    """Make a token for ``user``; returns (ApiToken row, the token, to be shown once)."""
    try:
        name = values.name(name, MAX_NAME)
    except values.ValueProblem as exc:
        raise TokenError(str(exc)) from None
    if not user.active:
        raise TokenError(_("'%(name)s' is disabled; their tokens would not work.",
                           name=user.name))
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.create(user=user, name=name, prefix=token[:SHOWN_CHARS],
                          token_hash=_digest(token))
    return row, token


_BY_DIGEST = Prepared(lambda digest: (
    ApiToken.select(ApiToken.id, ApiToken.last_used_at, *User._meta.sorted_fields).join(User)
    .where(ApiToken.token_hash == digest)))


def verify_token(token):
    """The active user a token belongs to, or None (unknown, revoked, or user disabled).

    Called on every API request that sends ``Authorization: Bearer``: one prepared query;
    records ``last_used_at`` when it is unset or more than a minute old.
    """
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN:
        return None
    rows = _BY_DIGEST.rows(_digest(token))
    if not rows:
        return None
    token_id, last_used_at, *user_values = rows[0]
    user = model_row(User, user_values)
    if not user.active:
        return None
    now = utcnow()
    if last_used_at is None or now - last_used_at >= LAST_USED_EVERY:
        ApiToken.update(last_used_at=now).where(ApiToken.id == token_id).execute()
    return user


def tokens_of(user):
    """The user's tokens, newest first."""
    return list(ApiToken.select().where(ApiToken.user == user)
                .order_by(ApiToken.created_at.desc(), ApiToken.id.desc()))


def revoke_token(user, token_id):
    """Delete the user's token with this id; returns it, or None when the user has no
    such token (another user's token is "no such token", never "forbidden")."""
    row = ApiToken.get_or_none((ApiToken.id == token_id) & (ApiToken.user == user))
    if row is not None:
        delete_unused(row)  # nothing refers to a token: never refused today
    return row


def _find_user(name):
    user = User.get_or_none(User.name == name)
    if user is None:
        raise click.ClickException(f"There is no user named '{name}'.")
    return user


token_cli = click.Group("token", help="Manage personal API tokens.")


@token_cli.command("create")
@click.argument("user")
@click.option("--name", default="cli", show_default=True, help="What the token is for.")
def create_command(user, name):
    """Create a token for USER and print it once, alone on standard output."""
    try:
        row, token = create_token(_find_user(user), name)
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created token {row.id} '{row.name}' for {user}; it is shown this once:",
               err=True)
    click.echo(token)


@token_cli.command("list")
@click.argument("user")
def list_command(user):
    """Print USER's tokens: id, name, prefix, created, last used."""
    for row in tokens_of(_find_user(user)):
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        click.echo(f"{row.id}\t{row.name}\t{row.prefix}…\t{row.created_at:%Y-%m-%d %H:%M}\t{used}")


@token_cli.command("revoke")
@click.argument("token_id", type=int)
def revoke_command(token_id):
    """Revoke the token with this id (see ``token list``)."""
    row = ApiToken.select(ApiToken, User).join(User).where(ApiToken.id == token_id).get_or_none()
    if row is None:
        raise click.ClickException(f"There is no token {token_id}.")
    delete_unused(row)
    click.echo(f"Revoked token {row.id} '{row.name}' ({row.prefix}…) of {row.user.name}.")


def init_app(app):
    """Add the ``token`` CLI."""
    app.cli.add_command(token_cli)
