"""The renter's Images page: their images, the presets, what each node holds, and the
forms that add one (upload a ``podman save`` archive, build from a Containerfile) under
``id="new"``; an image's page with its log, streamed while it is added (an htmx poller
asks for the lines after the last it has, every second); Delete; and a notebook's "Save
as image". The rules are ``portal.images``'.
"""

from flask import redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, TextAreaField

from portal import images, values
from portal.archives import size_text
from portal.notebooks import get_notebook_or_404
from portal.presenters import answer, button_post, done, form_post, page_or_partial
from portal.renter.blueprint import bp

EXAMPLE = "FROM localhost/hourglass-python:bookworm\nRUN python3 -m venv /opt/venv\n"


class UploadImageForm(FlaskForm):
    name = StringField(_l("Name"))
    upload = HiddenField()


class BuildImageForm(FlaskForm):
    """Its fields are prefixed ``build-``: the upload form on the same page has a name too."""

    name = StringField(_l("Name"))
    containerfile = TextAreaField(_l("Containerfile"), render_kw={"rows": 8,
                                                                  "spellcheck": "false"})


def _build_form(**options):
    return BuildImageForm(prefix="build", **options)


class SaveImageForm(FlaskForm):
    name = StringField(_l("Name of the new image"))


@bp.context_processor
def image_texts():
    """What the image templates call: ``size_text`` (bytes), ``image_source_text`` and
    ``image_choices(jupyter)`` (the task and notebook forms' image suggestions)."""
    sources = {"preset": _("preset"), "upload": _("uploaded archive"),
               "build": _("built from a Containerfile"), "commit": _("saved notebook")}
    return {"size_text": size_text,
            "image_source_text": lambda source: sources.get(source, source),
            "image_choices": lambda jupyter=False: images.choices(current_user, jupyter)}


def _page(upload_form=None, build_form=None, status=200):
    nodes = images.node_images(current_user)
    presets = images.sync_presets({name: size for _node, found in nodes for name, size in found})
    own = [image for image in images.visible(current_user) if image.user_id is not None]
    build_form = build_form or _build_form(formdata=None)
    if build_form.containerfile.data is None:
        build_form.containerfile.data = EXAMPLE
    return answer("renter/images.html", status, push=url_for("renter.images"), own=own,
                  presets=presets, nodes=nodes,
                  upload_form=upload_form or UploadImageForm(formdata=None),
                  build_form=build_form)


@bp.get("/images", endpoint="images")
def images_page():
    return _page()


def _added(image):
    return done(_("Adding image '%(name)s'…", name=image.name),
                url_for("renter.image_page", image_id=image.id))


@bp.post("/images/upload")
def upload_image():
    return form_post(UploadImageForm, lambda form: images.add_upload(
        current_user, form.name.data, form.upload.data), _added,
        lambda form: _page(upload_form=form)[0])


@bp.post("/images/build")
def build_image():
    return form_post(_build_form, lambda form: images.add_build(
        current_user, form.name.data, form.containerfile.data), _added,
        lambda form: _page(build_form=form)[0])


def _after():
    try:
        return values.optional_whole_number(request.args.get("after"), 0, 10**12) or 0
    except values.ValueProblem:
        return 0


@bp.get("/images/<int:image_id>")
def image_page(image_id):
    image = images.get_image_or_404(current_user, image_id)
    log = images.log_view(image, _after())
    return page_or_partial("renter/image.html", "renter/_image_update.html", image=image,
                           log=log, in_use=images.users_of(image))


@bp.post("/images/<int:image_id>/delete")
def delete_image_view(image_id):
    image = images.get_image_or_404(current_user, image_id)
    return button_post(
        lambda: images.delete_image(current_user, image),
        lambda _gone: done(_("Deleted image '%(name)s'.", name=image.name),
                           url_for("renter.images")),
        lambda: redirect(url_for("renter.image_page", image_id=image.id), 303))


@bp.post("/notebooks/<int:notebook_id>/image")
def save_notebook_image(notebook_id):
    notebook = get_notebook_or_404(current_user, notebook_id)
    form = SaveImageForm()
    return button_post(lambda: images.save_notebook(current_user, notebook, form.name.data),
                       _added, lambda: redirect(url_for("renter.notebook_page",
                                                        notebook_id=notebook.id), 303))
