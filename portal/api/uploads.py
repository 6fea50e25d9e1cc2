"""Restartable uploads (``portal.uploads``): announce a file, send it in pieces, ask how
far it got, delete it. Another renter's upload is a 404.

``PUT /uploads/<key>?offset=N`` appends the body (``application/octet-stream``, read in
pieces, never whole in memory) when N is where the received bytes end, else 409 with
``received`` in the error's fields; after a dropped connection, ``GET`` says where to go
on. A finished upload is used by naming its key where a file is asked for (a dataset, an
algorithm, an image, a notebook's folder).
"""

from flask import request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal import files, uploads, values
from portal.api.auth import api_user
from portal.api.errors import ApiError, refusals, refused
from portal.api.registry import route
from portal.api.schema import Binary, Integer, Object, Record, String

KEY = _l("The upload's key: name it where a file is asked for")
UPLOAD = Record({
    "key": String(KEY),
    "filename": String(),
    "size": Integer(_l("Bytes the whole file has")),
    "received": Integer(_l("Bytes on the server so far; the next piece starts here")),
}, name="Upload")
NEW_UPLOAD = Object({
    "filename": String(_l("The file's name"), min_length=1, max_length=files.NAME_MAX,
                       pattern=files.FILE_NAME,
                       rule=_l("a file name: one line, no '/', not only dots")),
    "size": Integer(_l("Bytes the whole file has (at most HOURGLASS_UPLOAD_MAX_BYTES)"),
                    minimum=0),
}, required=("filename", "size"), name="NewUpload")


def upload_json(upload):
    return {"key": upload.key, "filename": upload.filename, "size": upload.size,
            "received": upload.received}


def _find(key):
    try:
        return uploads.find(api_user(), key)
    except uploads.UploadMissing:
        raise ApiError(404, "not_found", _("There is no such upload (or it was removed).")) \
            from None


@route("/uploads", "POST", summary=_l(
    "Announce a file to send in pieces (PUT /uploads/{key}); answers its key"),
       role="renter", body=NEW_UPLOAD, response=UPLOAD, status=201)
def create_upload(body):
    with refusals():
        upload = uploads.create(api_user(), body["filename"], body["size"])
    return upload_json(upload)


@route("/uploads/<key>", summary=_l(
    "An upload and how many bytes were received: where to go on after a dropped "
    "connection"), role="renter", response=UPLOAD)
def get_upload(key):
    return upload_json(_find(key))


@route("/uploads/<key>", "PUT", summary=_l(
    "Append the body to the upload at the query's 'offset' (a byte number; when left out, "
    "where the received bytes end), which must be where the received bytes end (else 409 "
    "with 'received'); never past its size (409, what fitted is kept)"),
       role="renter", body=Binary(_l("The next bytes of the file")), response=UPLOAD)
def put_upload(key, body):
    upload = _find(key)
    offset = request.args.get("offset")
    if offset is not None:
        try:
            offset = values.whole_number(offset, 0, 2**63 - 1)
        except values.ValueProblem:
            message = _("'offset' must be a whole number of bytes.")
            raise ApiError(400, "invalid", message, {"offset": message}) from None
    try:
        return upload_json(uploads.append(upload, offset, body))
    except uploads.UploadConflict as exc:
        raise ApiError(409, "conflict", str(exc), {"offset": str(exc),
                                                  "received": str(exc.received)}) from None
    except uploads.UploadTooLarge as exc:
        raise refused(str(exc)) from None


@route("/uploads/<key>", "DELETE", summary=_l("Forget an upload and its bytes"),
       role="renter")
def delete_upload(key):
    uploads.discard(_find(key))
