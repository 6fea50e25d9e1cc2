"""Files without a running container: a notebook's folder (/code) browsed, viewed,
downloaded (a file, or a folder as a .tar.gz), uploaded into (``static/js/upload.js``
through the restartable uploads of ``/api/v1/uploads``, then a form post that moves the
finished uploads in) and deleted from, from the portal; no container is started.

The same pages serve any folder a renter may read (``Space``): ``show`` answers one URL
for a folder's listing, a file's text, and, with ``?download=1``, the file or the folder
as an archive. An algorithm's or dataset's version (immutable) is a read-only ``Space``
on a route of its own::

    @bp.get("/algorithms/<int:algorithm_id>/versions/<int:number>/files",
            defaults={"relpath": ""})
    @bp.get("/algorithms/<int:algorithm_id>/versions/<int:number>/files/<path:relpath>")
    def algorithm_files(algorithm_id, number, relpath):
        version = ...  # the renter's own, else 404
        space = Space(folder, "renter.algorithm_files",
                      {"algorithm_id": algorithm_id, "number": number}, "name-v1")
        return show(space, relpath, title=..., back=(label, url))

and its template part is ``renter/_files.html`` (with ``fs``, a ``FolderView``).
"""

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from flask import Response, abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from portal import files, notebook_folders, storage, uploads
from portal.archives import stream_archive
from portal.notebooks import get_notebook_or_404
from portal.renter.blueprint import bp


@dataclass(frozen=True)
class Space:
    """A folder a page shows: ``root`` on the host; its pages are ``endpoint`` with
    ``args`` and ``relpath``; ``name`` names its archive; ``writable``: upload and delete
    (``upload_endpoint``, ``delete_endpoint`` take ``args``)."""

    root: Path
    endpoint: str
    args: dict
    name: str
    writable: bool = False
    upload_endpoint: str = ""
    delete_endpoint: str = ""

    def url(self, relpath="", **query):
        return url_for(self.endpoint, relpath=relpath, **self.args, **query)


@dataclass
class FolderView:
    """What ``renter/_files.html`` shows: where (``crumbs``: [(name, url)]), then a
    folder's ``entries`` or a file (``file``: its Entry, ``text``: None when binary or
    too large)."""

    space: Space
    relpath: str
    crumbs: list
    entries: list = field(default_factory=list)
    file: files.Entry | None = None
    text: str | None = None

    @property
    def is_folder(self):
        return self.file is None


def _crumbs(space, relpath):
    crumbs, parts = [(space.name, space.url(""))], relpath.split("/") if relpath else []
    for i, part in enumerate(parts):
        crumbs.append((part, space.url("/".join(parts[:i + 1]))))
    return crumbs


def attachment(name):
    """A Content-Disposition value that downloads as ``name`` (any Unicode; RFC 6266)."""
    simple = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode() or "download"
    simple = simple.replace("\\", "_").replace('"', "_")
    return f"attachment; filename=\"{simple}\"; filename*=UTF-8''{quote(name, safe='')}"


def _download(space, found):
    if found.is_dir:
        name = found.name if found.relpath else space.name
        return Response(stream_archive(space.root, name, files.split(found.relpath)),
                        mimetype="application/gzip",
                        headers={"Content-Disposition": attachment(f"{name}.tar.gz")})
    return send_file(files.open_file(space.root, found.relpath), as_attachment=True,
                     download_name=found.name, mimetype="application/octet-stream")


def show(space, relpath, template="renter/files.html", **context):
    """Answer ``space``'s page for ``relpath``: a folder's listing or a file's text, or
    with ``?download=1`` the file, or the folder as a .tar.gz. 404 for what is not there
    or may not be shown (a link, a fifo, a path that leaves the folder)."""
    view = FolderView(space, relpath, _crumbs(space, relpath))
    try:
        found = files.entry(space.root, relpath)
        if request.args.get("download"):
            return _download(space, found)
        if found.is_dir:
            view.entries = files.entries(space.root, relpath)
        else:
            view.file, view.text = found, files.read_text(space.root, relpath)
    except FileNotFoundError:
        if relpath or not space.writable:
            abort(404)
        # a writable folder not made yet: empty
    except (NotADirectoryError, IsADirectoryError, ValueError):
        abort(404)
    return render_template(template, fs=view, **context)


# --- a notebook's folder -----------------------------------------------------------------


def notebook_space(notebook):
    """The writable ``Space`` of ``notebook``'s own folder (/code)."""
    root = notebook_folders.code_folder(notebook_folders.data_root(), notebook)
    return Space(root, "renter.notebook_files", {"notebook_id": notebook.id},
                 f"notebook-{notebook.id}", writable=True,
                 upload_endpoint="renter.notebook_files_upload",
                 delete_endpoint="renter.notebook_files_delete")


@bp.get("/notebooks/<int:notebook_id>/files", defaults={"relpath": ""})
@bp.get("/notebooks/<int:notebook_id>/files/<path:relpath>")
def notebook_files(notebook_id, relpath):
    notebook = get_notebook_or_404(current_user, notebook_id)
    return show(notebook_space(notebook), relpath,
                title=_("Files of %(name)s", name=notebook.name),
                back=(notebook.name, url_for("renter.notebook_page", notebook_id=notebook.id)))


def _check_folder(space, relpath):
    """404 unless ``relpath`` is a folder of ``space`` (its root made when missing)."""
    if not relpath:
        storage.ensure_folder(space.root)
        return
    try:
        if files.entry(space.root, relpath).is_dir:
            return
    except (FileNotFoundError, NotADirectoryError, ValueError):
        pass
    abort(404)


@bp.post("/notebooks/<int:notebook_id>/files/upload")
def notebook_files_upload(notebook_id):
    """Move the finished uploads named by the form's ``upload`` keys into its ``folder``."""
    space = notebook_space(get_notebook_or_404(current_user, notebook_id))
    relpath = request.form.get("folder", "")
    _check_folder(space, relpath)
    keys = request.form.getlist("upload")
    placed = []
    for key in keys:
        try:
            upload, path = uploads.complete(current_user, key)
            files.move_in(space.root, relpath, upload.filename, path)
        except uploads.UploadError as exc:
            flash(str(exc), "error")
            continue
        except (ValueError, OSError):
            flash(_("%(name)s could not be saved: a folder has its name, or the name is not "
                    "allowed.", name=upload.filename), "error")
            continue
        uploads.discard(upload)
        placed.append(upload.filename)
    if placed:
        flash(ngettext("Uploaded %(num)d file: %(names)s.", "Uploaded %(num)d files: "
                       "%(names)s.", len(placed), names=", ".join(placed)), "success")
    elif not keys:
        flash(_("Choose a file to upload."), "error")
    return redirect(space.url(relpath), 303)


@bp.post("/notebooks/<int:notebook_id>/files/delete")
def notebook_files_delete(notebook_id):
    """Delete the file the form's ``path`` names (never a folder)."""
    space = notebook_space(get_notebook_or_404(current_user, notebook_id))
    relpath = request.form.get("path", "")
    try:
        files.remove(space.root, relpath)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        abort(404)
    except IsADirectoryError:
        flash(_("Only files can be deleted here."), "error")
    else:
        flash(_("Deleted %(name)s.", name=relpath.rpartition("/")[2]), "success")
    return redirect(space.url(relpath.rpartition("/")[0]), 303)
