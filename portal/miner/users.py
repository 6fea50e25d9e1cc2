"""The miner's Users page: renters and miners, groups, and what can be done to them.

A generated password is shown once, in the response to the action that
made it; it is never flashed (flashes live in the session cookie) or logged.
"""

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectChoice, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from portal import values
from portal.miner.blueprint import bp, get_or_404
from portal.models import Group, User
from portal.presenters import answer, button_post, done
from portal.users import (
    ROLE_NAMES,
    UserError,
    create_group,
    create_user,
    delete_group,
    generate_password,
    group_names_by_user,
    set_active,
    set_groups,
    set_password,
)

ONLY_RENTERS = _l("Only renters join groups.")


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class UserForm(FlaskForm):
    name = StringField(_l("User name"), validators=[DataRequired(), Length(max=32)])
    display_name = StringField(_l("Display name"), validators=[Optional(), Length(max=128)])
    role = SelectField(_l("Role"), choices=[SelectChoice(r, ROLE_NAMES[r])
                                                for r in ("renter", "miner")])
    password = PasswordField(_l("Password (leave empty to generate one)"),
                             validators=[Optional()])
    groups = CheckboxesField(_l("Groups"), coerce=int)


class GroupForm(FlaskForm):
    name = StringField(_l("Group name"), validators=[DataRequired(), Length(max=32)])
    description = StringField(_l("Description"), validators=[Optional(), Length(max=256)])


def _group_choices():
    return [SelectChoice(g.id, g.name) for g in Group.select().order_by(Group.name)]


def _page(user_form=None, group_form=None, shown_password=None, status=200):
    """Render the Users page; ``shown_password`` is (user name, password) to show once."""
    user_form = user_form or UserForm(formdata=None)
    user_form.groups.choices = _group_choices()
    return answer("miner/users.html", status, push=url_for("miner.users"),
                  users=User.select().order_by(User.role, User.name),
                  groups=list(Group.select().order_by(Group.name)),
                  member_of=group_names_by_user(), user_form=user_form,
                  group_form=group_form or GroupForm(formdata=None, prefix="group"),
                  shown_password=shown_password)


@bp.get("/users")
def users():
    return _page()


def _back(message):
    return done(message, url_for("miner.users"))


@bp.post("/users")
def create_user_view():
    form = UserForm()
    form.groups.choices = _group_choices()
    valid = form.validate()
    if form.role.data == "miner" and form.groups.data:
        form.groups.errors = [*form.groups.errors, ONLY_RENTERS]
        valid = False
    if not valid:
        return _page(user_form=form, status=400)
    password = form.password.data or generate_password()
    names = [g.name for g in Group.select().where(Group.id.in_(form.groups.data or []))]
    try:
        user = create_user(form.name.data.strip(), form.role.data, password,
                           form.display_name.data, names)
    except UserError as exc:
        form.name.errors.append(str(exc))
        return _page(user_form=form, status=400)
    flash(_("Created %(role)s '%(name)s'.", role=ROLE_NAMES[user.role], name=user.name), "success")
    shown = (user.name, password) if not form.password.data else None
    return _page(shown_password=shown)


@bp.post("/users/<int:user_id>/active")
def set_active_view(user_id):
    user = get_or_404(User, user_id)
    if user.id == current_user.id:
        flash(_("You cannot disable your own account."), "error")
    else:
        set_active(user, request.form.get("active") == "1")
        flash(_("'%(name)s' is now %(state)s.", name=user.name,
                state=_("enabled") if user.active else _("disabled")), "success")
    return redirect(url_for("miner.users"), 303)


@bp.post("/users/<int:user_id>/password")
def reset_password_view(user_id):
    user = get_or_404(User, user_id)
    typed = request.form.get("password", "")
    password = typed or generate_password()
    try:
        set_password(user, password)
    except UserError as exc:
        flash(str(exc), "error")
        return redirect(url_for("miner.users"), 303)
    flash(_("Password of '%(name)s' changed; their sessions are signed out.", name=user.name),
          "success")
    return _page(shown_password=None if typed else (user.name, password))


@bp.post("/users/<int:user_id>/groups")
def set_groups_view(user_id):
    user = get_or_404(User, user_id)
    ids = [number for v in request.form.getlist("groups")
           if (number := values.row_id(v)) is not None]
    if user.role != "renter" and ids:
        flash(str(ONLY_RENTERS), "error")
        return redirect(url_for("miner.users"), 303)
    set_groups(user, ids)
    return _back(_("Groups of '%(name)s' saved.", name=user.name))


@bp.post("/groups")
def create_group_view():
    form = GroupForm(prefix="group")
    if not form.validate():
        return _page(group_form=form, status=400)
    try:
        group = create_group(form.name.data.strip(), form.description.data)
    except UserError as exc:
        form.name.errors.append(str(exc))
        return _page(group_form=form, status=400)
    return _back(_("Created group '%(name)s'.", name=group.name))


@bp.post("/groups/<int:group_id>/delete")
def delete_group_view(group_id):
    group = get_or_404(Group, group_id)
    return button_post(lambda: delete_group(group),
                       lambda _deleted: _back(_("Deleted group '%(name)s'.", name=group.name)),
                       lambda: _page(status=409), errors=UserError)
