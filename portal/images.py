"""The renter's images: presets the miner offers to everyone (``Image.user`` None) and the
renter's own (an uploaded ``podman save`` archive, a build from a Containerfile, a saved
notebook); what each node holds; adding and deleting by the rules.

The engine work is the scheduler's ``app.extensions["hourglass.renter_images"]`` (see
``scheduler.renter_images``; the portal never imports it): an addition makes the row
``pending`` and hands it over; the row ends ``ready`` (with its size and whether it
contains JupyterLab) or ``failed``. A renter's image is named
``localhost/hourglass/u<user id>/<name>:<row id>``, so renters never collide. A renter
uses (task, notebook, template, a Containerfile's FROM and COPY --from) a preset, an image
of their own, or any other image named in full outside that prefix; Podman resolves a
short name by the end of any local name, so short names, IDs and digests are refused. A
renter sees no other renter's image names. A renter deletes only an image of their own
that nothing uses (no notebook, no pending or running task); presets stay. A notebook
needs an image marked ``jupyter``.
"""

import json
import re
import secrets

from flask import abort, current_app
from flask_babel import gettext as _

from portal import containerfile, references, uploads, values
from portal.models import REPLICA_ENDED, Image, Node, Notebook, Replica, Task
from portal.task_input import TaskError, check_fields

NAME_MAX = 64
CONTAINERFILE_MAX = 20_000
PREFIX = "localhost/hourglass/u"
BUSY = ("pending", "building")


class ImageError(TaskError):
    """Bad input or a refused change; ``errors`` maps a field (``name``, ``containerfile``,
    ``upload``, ``image``; None: the image) to its message. A TaskError, so a task's or
    notebook's checks report it with their own."""


def engine():
    """The app's renter images engine."""
    return current_app.extensions["hourglass.renter_images"]


def visible(user):
    """Presets then ``user``'s own images, each by name."""
    return list(Image.select().where(Image.user.is_null() | (Image.user == user))
                .order_by(Image.user.is_null(False), Image.name, Image.id))


def get_image_or_404(user, image_id):
    """A preset or ``user``'s image; another renter's or none is 404."""
    found = values.row_id(image_id)
    image = None if found is None else Image.get_or_none(Image.id == found)
    if image is None or image.user_id not in (None, user.id):
        abort(404)
    return image


def choices(user, jupyter=False):
    """References of the ready presets and ``user``'s ready images (only those with
    JupyterLab when ``jupyter``): what the task and notebook forms offer. The presets
    that discovery found on a node are listed first (``sync_presets``)."""
    sync_presets()
    query = Image.select().where((Image.user.is_null() | (Image.user == user))
                                 & (Image.state == "ready"))
    if jupyter:
        query = query.where(Image.jupyter)
    return [(image.reference, image.name)
            for image in query.order_by(Image.user.is_null(False), Image.name)]


def log_view(image, after=0):
    """``{"running", "last_line", "lines": [{"number", "text"}]}``: the log lines of
    ``image`` numbered above ``after``, live while this process adds it, else its stored
    log."""
    live = engine().snapshot(image.id, after)
    if live is not None:
        return live
    stored = image.log.splitlines()
    return {"running": image.state in BUSY, "last_line": len(stored),
            "lines": [{"number": n, "text": text}
                      for n, text in enumerate(stored, 1) if n > after]}


def _qualified(reference):
    """Whether ``reference`` names its registry host (the engine's rule: a first part with
    a dot, a colon or capitals, or ``localhost``) and no digest."""
    first, slash, _rest = reference.partition("/")
    return bool(slash) and "@" not in reference and (
        any(c in first for c in ".:") or first == "localhost" or first.lower() != first)


def _another_renters(user, name):
    """Whether the image name ``name`` is under the renter prefix but not ``user``'s."""
    lowered = name.lower()
    return lowered.startswith(PREFIX) and not lowered.startswith(f"{PREFIX}{user.id}/")


def check_usable(user, reference, jupyter=False):
    """``reference`` when ``user`` may start a task (a notebook: ``jupyter``) in it: a preset
    or their own image that is ready (for a notebook: with JupyterLab), or an image
    Hourglass does not list named in full outside the renter prefix. Raises ImageError on
    the ``image`` field."""
    image = Image.get_or_none(Image.reference == reference)
    if image is None and not _qualified(reference):
        raise ImageError({"image": _(
            "Name the image in full with its registry (e.g. localhost/train:latest or "
            "docker.io/library/python:3.12): a short name, an image ID or a digest is not "
            "accepted.")})
    if (image is None and reference.lower().startswith(PREFIX)) or (
            image is not None and image.user_id not in (None, user.id)):
        raise ImageError({"image": _("No such image.")})
    if image is not None and image.state != "ready":
        raise ImageError({"image": _("The image '%(name)s' is not ready.", name=image.name)})
    if jupyter and image is not None and not image.jupyter:
        raise ImageError({"image": _("The image '%(name)s' has no JupyterLab: a notebook "
                                    "needs an image with jupyter-lab.", name=image.name)})
    return reference


def check_name(value):
    """An image's name as typed (``values.name``, at most NAME_MAX characters)."""
    return values.checked(ImageError, "name", values.name, value, NAME_MAX)


def _slug(name):
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return slug or "image"


def new_image(user, name, source, **fields):
    """A pending row of ``user``'s with its reference (the row id is its tag), for the
    engine to fill."""
    image = Image.create(user=user, name=name, source=source, state="pending",
                         reference=f"{PREFIX}{user.id}/new-{secrets.token_hex(8)}:0",
                         **fields)
    image.reference = f"{PREFIX}{user.id}/{_slug(name)}:{image.id}"
    image.save()
    return image


def add_upload(user, name, key):
    """Load the ``podman save`` archive of ``user``'s finished upload ``key`` as a new image."""
    name = check_name(name)
    upload, path = uploads.complete(user, key)
    image = new_image(user, name, "upload")
    # in the engine's thread (its own database connection), once loaded or refused
    engine().load(image.id, path, done=lambda: uploads.discard(upload, path))
    return image


def check_containerfile(user, text):
    """A Containerfile as typed (lines ending in ``\\n``): text of at most
    CONTAINERFILE_MAX characters that keeps ``portal.containerfile``'s rules, its images
    ones ``user`` may use (``check_usable``)."""
    text = values.checked(ImageError, "containerfile", values.text, text, CONTAINERFILE_MAX)
    text = text.replace("\r\n", "\n").replace("\r", "\n")

    def refusal(reference):
        try:
            check_usable(user, reference)
        except ImageError as exc:
            return exc.errors["image"]
        return None
    found = containerfile.problem(text, refusal)
    if found:
        raise ImageError({"containerfile": found})
    return text


def add_build(user, name, containerfile):
    """Build a new image of ``user``'s from ``containerfile`` (no network, no build
    arguments); its log streams while it runs."""
    errors, checked = {}, {}
    check_fields({"name": lambda: check_name(name),
                  "containerfile": lambda: check_containerfile(user, containerfile)},
                 checked, errors)
    if errors:
        raise ImageError(errors)
    image = new_image(user, checked["name"], "build", containerfile=checked["containerfile"])
    engine().build(image.id, checked["containerfile"])
    return image


def running_replica(notebook):
    """The running replica (with its node) of ``notebook``'s latest run, or None."""
    return (Replica.select(Replica, Node).join(Node).switch(Replica).join(Task)
            .where((Task.notebook == notebook) & (Replica.state == "running")
                   & (Replica.container != ""))
            .order_by(Task.id.desc(), Replica.index).first())


def save_notebook(user, notebook, name):
    """Save ``user``'s running ``notebook`` (its first subtask's container) as a new image."""
    name = check_name(name)
    replica = running_replica(notebook)
    if replica is None:
        raise ImageError({None: _("Only a running notebook can be saved as an image.")})
    image = new_image(user, name, "commit")
    engine().commit(image.id, replica.node.url, replica.container)
    return image


def users_of(image):
    """What still uses ``image``: ``(notebook names, task names)`` of the owner's notebooks
    and of tasks with a replica that has not ended."""
    notebooks = [n.name for n in Notebook.select(Notebook.name).where(
        (Notebook.image == image.reference) & (Notebook.deleted == False))]  # noqa: E712
    tasks = [t.name for t in Task.select(Task.name).join(Replica).where(
        (Task.image == image.reference) & Replica.state.not_in(REPLICA_ENDED)).distinct()]
    return notebooks, tasks


def delete_image(user, image):
    """Delete ``user``'s ``image`` from the nodes and the list: refused for a preset, while it
    is being added, or while something uses it."""
    if image.user_id != user.id:
        raise ImageError({None: _("Presets are the miner's: they cannot be deleted.")})
    if image.state in BUSY:
        raise ImageError({None: _("Wait until the image is ready or has failed.")})
    notebooks, tasks = users_of(image)
    if notebooks or tasks:
        raise ImageError({None: _("'%(name)s' is in use by %(users)s: delete or stop them "
                                  "first.", name=image.name,
                                  users=", ".join(notebooks + tasks))})
    urls = [url for (url,) in Node.select(Node.url).tuples()]
    engine().remove(image.reference, urls)
    references.delete_unused(image)


def _discovered(node):
    """The image names discovery last found on ``node``."""
    try:
        return [name for name in json.loads(node.images or "[]") if isinstance(name, str)]
    except ValueError:
        return []


def node_images(user):
    """``[(node, [(image name, size in bytes or None)])]`` of every node by name, without
    the names of other renters' images: sizes from the node's engine when it answers, else
    the names discovery last found."""
    nodes = list(Node.select().order_by(Node.name))
    sizes = engine().node_sizes([node.url for node in nodes])
    rows = []
    for node in nodes:
        found = sizes.get(node.url)
        found = found if found is not None else dict.fromkeys(_discovered(node))
        rows.append((node, sorted((name, size) for name, size in found.items()
                                  if not _another_renters(user, name))))
    return rows


def sync_presets(held=None):
    """Make the rows of the presets (``engine().presets``: ``(name, reference, jupyter)``)
    that a node holds, with their size: ``held`` is ``{image name: bytes or None}``
    (default: what discovery found). Returns the preset rows by name."""
    if held is None:
        held = {name: None for node in Node.select(Node.images) for name in _discovered(node)}
    rows = {image.reference: image for image in Image.select().where(Image.user.is_null())}
    for name, reference, jupyter in engine().presets:
        if reference not in held:
            continue
        row, size = rows.get(reference), held[reference] or 0
        if row is None and not Image.select().where(Image.reference == reference).exists():
            Image.create(user=None, name=name, reference=reference, source="preset",
                         state="ready", jupyter=jupyter, size_bytes=size)
        elif row is not None and size and row.size_bytes != size:
            Image.update(size_bytes=size).where(Image.id == row.id).execute()
    return list(Image.select().where(Image.user.is_null()).order_by(Image.name))
