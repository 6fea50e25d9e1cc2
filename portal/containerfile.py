"""A renter's Containerfile read as the engine reads it, and the rules it must keep.

The text is split into logical instructions first (continuation lines joined, comment and
blank lines inside them skipped, as the engine's parser does), and only then checked, so
that a line break or a comment cannot hide an instruction. Refused: parser directives
(``# escape=`` would change the continuation character, ``# syntax=`` the parser),
``ONBUILD``, ``ADD`` (the engine fetches a URL or git source itself, outside the build's
network; with an empty context there is nothing else to add), options of ``RUN``
(``--mount`` shares a cache or a secret, ``--network`` leaves ``--network=none``), any
``--mount``, and a ``FROM`` or ``COPY --from`` image that the renter may not use or that
holds a ``$`` variable.
"""

import re

from flask_babel import gettext as _

_DIRECTIVE = re.compile(r"^\s*#\s*(escape|syntax)\s*=", re.IGNORECASE | re.MULTILINE)
_CONTINUED = re.compile(r"\\[ \t]*$")  # the engine's continuation (no escape directive)


def _instruction(line):
    keyword, *rest = line.split(None, 1)
    return keyword.upper(), rest[0] if rest else ""


def instructions(text):
    """``[(KEYWORD, arguments)]``: the logical instructions of ``text`` (lines end in
    ``\\n``) in order."""
    found, current = [], None
    for line in text.lstrip("\ufeff").split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continuation, as the engine does
        part = _CONTINUED.sub("", line)
        current = part.lstrip() if current is None else current + part
        if part == line:
            found.append(_instruction(current))
            current = None
    if current is not None and current.strip():
        found.append(_instruction(current))
    return found


def problem(text, refusal):
    """The first rule ``text`` (lines end in ``\\n``) breaks, as a message, or None.
    ``refusal(image)`` is why the renter may not use ``image`` (a message), or None."""
    if _DIRECTIVE.search(text):
        return _("Parser directives (# escape=, # syntax=) are not allowed.")
    steps = instructions(text)
    if not any(keyword == "FROM" for keyword, _args in steps):
        return _("A Containerfile starts FROM an image, e.g. "
                 "FROM localhost/hourglass-python:bookworm.")
    stages = {"scratch"}
    for keyword, arguments in steps:
        words = arguments.split()
        if keyword == "ONBUILD":
            return _("ONBUILD is not allowed.")
        if keyword == "ADD":
            return _("ADD is not allowed: the build has an empty context and no network, so "
                     "there is no file or URL to add (use COPY --from or RUN).")
        if "--mount" in arguments.lower() or (keyword == "RUN" and words
                                               and words[0].startswith("--")):
            return _("Options of RUN (such as --mount or --network) are not allowed: the "
                     "build has no network and shares nothing.")
        images = []
        if keyword == "FROM":
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
            elif len(words) != 1:
                return _("FROM takes an image and optionally AS a name, nothing else.")
            images.append(words[0])
        elif keyword == "COPY":
            for word in words:
                if word.lower() == "--from":
                    return _("Write COPY --from=NAME.")
                if word.lower().startswith("--from="):
                    images.append(word.split("=", 1)[1])
        for image in images:
            if "$" in image:
                return _("FROM and COPY --from name an image in full: no $ variables.")
            if image.lower() in stages or image.isdigit():
                continue
            why = refusal(image)
            if why:
                return _("The image %(image)s cannot be used: %(problem)s", image=image,
                         problem=why)
    return None
