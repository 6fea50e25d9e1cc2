"""A tiny schema language for JSON bodies: one definition both checks a request body
and describes it (and the responses) in the OpenAPI document, so they cannot differ.

``validate`` is strict: unknown fields, missing required fields, wrong types
(``true`` is not an integer, ``1.5`` is not one but ``1.0`` is, as JSON Schema says) and
out-of-range values are refused with a message naming the field.
"""

import re

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from portal import values


class SchemaError(ValueError):
    """A body that does not match its schema; the message names the field, and ``field``
    is its path (``subtasks[0].role``; "" for the body as a whole)."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


def iso(moment):
    """A naive UTC datetime as ISO 8601 with ``Z``, or None: how the API writes times."""
    return moment.isoformat(timespec="seconds") + "Z" if moment else None


class Type:
    """One JSON value. ``nullable`` allows ``null``; ``description`` goes into the document."""

    json_type = ""
    media_type = "application/json"  # as a request body

    def __init__(self, description="", nullable=False):
        self.description = description
        self.nullable = nullable

    def schema(self, components):
        """This type as JSON Schema; named objects are added to ``components``."""
        out = {"type": [self.json_type, "null"] if self.nullable else self.json_type}
        if self.description:
            out["description"] = str(self.description)
        return {**out, **self.constraints()}

    def constraints(self):
        return {}

    def validate(self, value, where):
        """``value`` checked (and maybe converted); raises SchemaError naming ``where``."""
        if value is None and self.nullable:
            return None
        if not self.accepts(value):
            raise SchemaError(_("'%(field)s' must be %(type)s.", field=where, type=self.noun()),
                              where)
        try:
            return self.check(value, where)
        except SchemaError as exc:
            if exc.field is None:  # the innermost value refused names it
                exc.field = where
            raise

    def accepts(self, value):
        raise NotImplementedError

    def noun(self):
        raise NotImplementedError

    def check(self, value, where):
        return value


class String(Type):
    """A string; ``pattern`` is a body from ``portal.values`` (matched whole), ``rule`` says
    it in words for the error message; ``enum`` lists the only values allowed."""

    json_type = "string"

    def __init__(self, description="", nullable=False, min_length=0, max_length=None,
                 format=None, pattern=None, rule=None, enum=None):
        super().__init__(description, nullable)
        self.min_length, self.max_length, self.format = min_length, max_length, format
        self.pattern, self.rule, self.enum = pattern, rule, enum
        self._pattern = re.compile(pattern) if pattern else None

    def constraints(self):
        out = {"minLength": self.min_length} if self.min_length else {}
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.pattern:
            out["pattern"] = values.pattern(self.pattern)
        if self.enum:
            out["enum"] = list(self.enum)
        return {**out, **({"format": self.format} if self.format else {})}

    def accepts(self, value):
        return isinstance(value, str)

    def noun(self):
        return _("a string")

    def check(self, value, where):
        if self.enum and value not in self.enum:
            raise SchemaError(_("'%(field)s' must be one of: %(values)s.", field=where,
                                values=", ".join(self.enum)))
        if len(value) < self.min_length:
            raise SchemaError(ngettext("'%(field)s' must be at least %(num)d character long.",
                                       "'%(field)s' must be at least %(num)d characters long.",
                                       self.min_length, field=where))
        if self.max_length is not None and len(value) > self.max_length:
            raise SchemaError(ngettext("'%(field)s' must be at most %(num)d character long.",
                                       "'%(field)s' must be at most %(num)d characters long.",
                                       self.max_length, field=where))
        if self._pattern and not self._pattern.fullmatch(value):
            raise SchemaError(_("'%(field)s' must be %(rule)s.", field=where,
                                rule=self.rule or _("in the documented form")))
        return value


def Name(limit, description="", nullable=False, required=True):  # noqa: N802 (a type)
    """A name (``portal.values.name``): 1 to ``limit`` characters on one line, no spaces at
    either end, no control characters or text-direction overrides; may be "" when not
    ``required`` (a description)."""
    return String(description, nullable, min_length=1 if required else 0, max_length=limit,
                  pattern=values.NAME if required else f"(?:{values.NAME})?",
                  rule=_l("one line without spaces at either end, control characters or "
                          "text-direction overrides"))


def Text(limit, description="", required=False):  # noqa: N802
    """Free text (``portal.values.text``): at most ``limit`` characters, no NUL or other
    control character but newline, CR and tab; not only whitespace when ``required``."""
    return String(description, min_length=1 if required else 0, max_length=limit,
                  pattern=values.FILLED_TEXT if required else values.TEXT,
                  rule=_l("text without NUL or other control characters")
                  if not required else _l("text (not only spaces) without NUL or other "
                                          "control characters"))


class Integer(Type):
    json_type = "integer"

    def __init__(self, description="", nullable=False, minimum=None, maximum=None):
        super().__init__(description, nullable)
        self.minimum, self.maximum = minimum, maximum

    def constraints(self):
        bounds = {"minimum": self.minimum, "maximum": self.maximum}
        return {key: value for key, value in bounds.items() if value is not None}

    def accepts(self, value):
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer() and abs(value) < 2**63)

    def noun(self):
        return _("an integer")

    def check(self, value, where):
        value = int(value)  # JSON Schema's integer: 32.0 is 32, as the document allows
        if self.minimum is not None and value < self.minimum:
            raise SchemaError(_("'%(field)s' must be at least %(n)d.", field=where,
                                n=self.minimum))
        if self.maximum is not None and value > self.maximum:
            raise SchemaError(_("'%(field)s' must be at most %(n)d.", field=where,
                                n=self.maximum))
        return value


class Boolean(Type):
    json_type = "boolean"

    def accepts(self, value):
        return isinstance(value, bool)

    def noun(self):
        return _("true or false")


class Binary(Type):
    """A request body of raw bytes (``application/octet-stream``): the view gets the
    request's stream, to read in pieces, instead of a parsed value."""

    media_type = "application/octet-stream"

    def schema(self, components):
        out = {"type": "string", "format": "binary"}
        return {**out, "description": str(self.description)} if self.description else out


class Array(Type):
    """A list of ``items``; ``first`` (a stricter type) applies to the first item only."""

    json_type = "array"

    def __init__(self, items, description="", nullable=False, min_items=0, max_items=None,
                 first=None):
        super().__init__(description, nullable)
        self.items, self.min_items, self.max_items, self.first = items, min_items, max_items, first

    def schema(self, components):
        out = super().schema(components)
        out["items"] = self.items.schema(components)
        if self.first is not None:
            out["prefixItems"] = [self.first.schema(components)]
        return out

    def constraints(self):
        out = {"minItems": self.min_items} if self.min_items else {}
        return {**out, **({"maxItems": self.max_items} if self.max_items is not None else {})}

    def accepts(self, value):
        return isinstance(value, list)

    def noun(self):
        return _("a list")

    def check(self, value, where):
        if len(value) < self.min_items:
            raise SchemaError(_("'%(field)s' must hold at least %(n)d items.", field=where,
                                n=self.min_items))
        if self.max_items is not None and len(value) > self.max_items:
            raise SchemaError(_("'%(field)s' may hold at most %(n)d items.", field=where,
                                n=self.max_items))
        return [(self.first if i == 0 and self.first else self.items).validate(
            item, f"{where}[{i}]") for i, item in enumerate(value)]


class Map(Type):
    """A JSON object whose keys are free (or ``keys``, a String) and whose values are all
    ``values``; ``reserved`` keys (exact names, and names starting with ``reserved_prefix``)
    are refused."""

    json_type = "object"

    def __init__(self, values, description="", nullable=False, max_items=None, keys=None,
                 reserved=(), reserved_prefix=None):
        super().__init__(description, nullable)
        self.values, self.max_items, self.keys = values, max_items, keys
        self.reserved, self.reserved_prefix = tuple(reserved), reserved_prefix

    def schema(self, components):
        out = super().schema(components)
        out["additionalProperties"] = self.values.schema(components)
        if self.keys is not None:
            names = self.keys.schema(components)
            banned = [{"enum": list(self.reserved)}] if self.reserved else []
            if self.reserved_prefix:
                banned.append({"pattern": "^" + re.escape(self.reserved_prefix)})
            out["propertyNames"] = {**names, "not": {"anyOf": banned}} if banned else names
        return out

    def constraints(self):
        return {"maxProperties": self.max_items} if self.max_items is not None else {}

    def accepts(self, value):
        return isinstance(value, dict)

    def noun(self):
        return _("an object")

    def check(self, value, where):
        if self.max_items is not None and len(value) > self.max_items:
            raise SchemaError(_("'%(field)s' may hold at most %(n)d items.", field=where,
                                n=self.max_items))
        for key in value:
            if self.keys is not None:
                self.keys.validate(key, where)
            if key in self.reserved or (self.reserved_prefix
                                        and key.startswith(self.reserved_prefix)):
                raise SchemaError(_("'%(field)s' may not set %(key)s.", field=where, key=key))
        return {key: self.values.validate(item, f"{where}.{key}") for key, item in value.items()}


class Object(Type):
    """A JSON object with known ``fields`` ({name: Type}); ``required`` names those that
    must be present. A ``name`` puts it in the document's components, referred to by $ref."""

    json_type = "object"

    def __init__(self, fields, required=(), name=None, description="", nullable=False):
        super().__init__(description, nullable)
        self.fields, self.required, self.name = fields, tuple(required), name

    def schema(self, components):
        out = super().schema(components)
        out["properties"] = {key: field.schema(components) for key, field in self.fields.items()}
        out["additionalProperties"] = False
        if self.required:
            out["required"] = list(self.required)
        if self.name is None:
            return out
        components[self.name] = out
        return {"$ref": f"#/components/schemas/{self.name}"}

    def accepts(self, value):
        return isinstance(value, dict)

    def noun(self):
        return _("an object")

    def check(self, value, where):
        prefix = f"{where}." if where else ""
        unknown = sorted(set(value) - set(self.fields))
        if unknown:
            raise SchemaError(_("Unknown field '%(field)s'.", field=prefix + unknown[0]),
                              prefix + unknown[0])
        missing = [key for key in self.required if key not in value]
        if missing:
            raise SchemaError(_("Missing field '%(field)s'.", field=prefix + missing[0]),
                              prefix + missing[0])
        return {key: self.fields[key].validate(item, prefix + key) for key, item in value.items()}


def Record(fields, name=None, description=""):  # noqa: N802 (reads like the other types)
    """An Object whose fields are all always present: what a response holds."""
    return Object(fields, required=tuple(fields), name=name, description=description)
