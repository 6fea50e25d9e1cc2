"""Users and groups: the rules for creating and changing them, and the ``user`` CLI.

Pages (``portal.miner.users``) and the CLI both go through these functions,
so a name is validated the same way wherever it is typed.
"""

import re
import secrets
import sys

import click
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from peewee import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from portal import values
from portal.db import database
from portal.models import ROLES, Group, Membership, User, new_session_nonce
from portal.references import InUse, delete_unused

NAME_RE = re.compile(r"[a-z][a-z0-9_.-]{1,31}")
DISPLAY_NAME_MAX, DESCRIPTION_MAX = 128, 256
MIN_PASSWORD = 8
FIRST_MINER = "admin"
ROLE_NAMES = {"miner": _l("miner"), "renter": _l("renter")}


class UserError(ValueError):
    """Bad input for a user or group; the message is shown to the person who typed it."""


def generate_password():
    """A random password for a new account (16 URL-safe characters)."""
    return secrets.token_urlsafe(12)


def _check_name(name, what):
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UserError(
            _(
                "A %(what)s name must be 2-32 characters: lowercase letters, digits, "
                "'.', '_' or '-', starting with a letter.",
                what=what,
            )
        )


def _one_line(value, limit):
    """A display name or description (``portal.values.name``; may be empty)."""
    try:
        return values.name(value, limit, required=False)
    except values.ValueProblem as exc:
        raise UserError(str(exc)) from None


def _check_password(password):
    if len(password or "") < MIN_PASSWORD:
        raise UserError(_("A password must be at least %(n)d characters.", n=MIN_PASSWORD))


def create_user(name, role, password, display_name="", groups=()):
    """Create a user; ``groups`` are group names that must exist. Raises UserError."""
    _check_name(name, _("user"))
    if role not in ROLES:
        raise UserError(_("Role must be one of: %(roles)s.", roles=", ".join(ROLES)))
    _check_password(password)
    display_name = _one_line(display_name, DISPLAY_NAME_MAX)
    with database.atomic():
        group_rows = [find_group(g) for g in groups]
        try:
            user = User.create(
                name=name,
                role=role,
                display_name=display_name,
                password_hash=generate_password_hash(password),
            )
        except IntegrityError:
            raise UserError(_("A user named '%(name)s' already exists.", name=name)) from None
        for group in group_rows:
            Membership.create(user=user, group=group)
    return user


def authenticate(name, password):
    """The active user with this name and password, or None (a name no user can have, such
    as one holding NUL, is not looked up at all)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return None
    user = User.get_or_none(User.name == name)
    if user is None or not user.active:
        return None
    if not check_password_hash(user.password_hash, password or ""):
        return None
    return user


def set_password(user, password):
    """Change the password and end every session of the user."""
    _check_password(password)
    user.password_hash = generate_password_hash(password)
    user.session_nonce = new_session_nonce()
    user.save()


def set_active(user, active):
    """Enable or disable a user; disabling ends their sessions."""
    user.active = active
    if not active:
        user.session_nonce = new_session_nonce()
    user.save()


def find_group(name):
    """The group with this name; UserError when there is none."""
    group = Group.get_or_none(Group.name == name)
    if group is None:
        raise UserError(_("There is no group named '%(name)s'.", name=name))
    return group


def create_group(name, description=""):
    """Create a group. Raises UserError for a bad or taken name or a too long description."""
    _check_name(name, _("group"))
    description = _one_line(description, DESCRIPTION_MAX)
    try:
        return Group.create(name=name, description=description)
    except IntegrityError:
        raise UserError(_("A group named '%(name)s' already exists.", name=name)) from None


def delete_group(group):
    """Delete a group and its memberships. Refused (UserError) while a pool is bound to it:
    unbinding would change who may use the pool (the default pool, bound to no group,
    serves every renter)."""
    try:
        delete_unused(group)
    except InUse as exc:
        raise UserError(str(exc)) from None


def set_groups(user, group_ids):
    """Make ``user`` a member of exactly the groups with these ids."""
    with database.atomic():
        groups = list(Group.select().where(Group.id.in_(list(group_ids))))
        Membership.delete().where(Membership.user == user).execute()
        for group in groups:
            Membership.create(user=user, group=group)


def group_names_by_user():
    """{user id: [group names]} for every user, in one query."""
    names = {}
    query = Membership.select(Membership.user, Group.name).join(Group).order_by(Group.name)
    for row in query.tuples():
        names.setdefault(row[0], []).append(row[1])
    return names


def ensure_first_miner():
    """Create the ``admin`` miner when there is no miner; return its password, else None."""
    if User.select().where(User.role == "miner").exists():
        return None
    password = generate_password()
    create_user(FIRST_MINER, "miner", password, display_name="Administrator")
    return password


user_cli = click.Group("user", help="Manage miner and renter accounts.")


@user_cli.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--group", "groups", multiple=True,
              help="Group to join (repeatable; created if missing).")
@click.option("--display-name", default="")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def add_command(name, role, groups, display_name, password_stdin):
    """Create a user; without --password-stdin a password is generated and printed once."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else generate_password()
    try:
        with database.atomic():
            for group in groups:
                if not Group.select().where(Group.name == group).exists():
                    create_group(group)
            create_user(name, role, password, display_name, groups)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {role} '{name}'.")
    if not password_stdin:
        click.echo(f"Password (shown once): {password}")


@user_cli.command("list")
def list_command():
    """Print every user with role, state and groups."""
    groups = group_names_by_user()
    for user in User.select().order_by(User.name):
        state = "active" if user.active else "disabled"
        click.echo(f"{user.name}\t{user.role}\t{state}\t{','.join(groups.get(user.id, []))}")


def init_app(app):
    """Add the ``user`` CLI and ``ROLE_NAMES`` for templates."""
    app.cli.add_command(user_cli)
    app.jinja_env.globals["ROLE_NAMES"] = ROLE_NAMES
