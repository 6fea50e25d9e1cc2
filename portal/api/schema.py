"""A tiny schema language for JSON bodies: one definition both checks a request body
and describes it (and the responses) in the OpenAPI document, so they cannot differ.

``validate`` is strict: unknown fields, missing required fields, wrong types
(``true`` is not an integer, ``1.0`` is not an integer) and out-of-range
values are refused with a message naming the field.
"""

from flask_babel import gettext as _
from flask_babel import ngettext


class SchemaError(ValueError):
    """A body that does not match its schema; the message names the field."""


def iso(moment):
    """A naive UTC datetime as ISO 8601 with ``Z``, or None: how the API writes times."""
    return moment.isoformat(timespec="seconds") + "Z" if moment else None


class Type:
    """One JSON value. ``nullable`` allows ``null``; ``description`` goes into the document."""

    json_type = ""

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
            raise SchemaError(_("'%(field)s' must be %(type)s.", field=where, type=self.noun()))
        return self.check(value, where)

    def accepts(self, value):
        raise NotImplementedError

    def noun(self):
        raise NotImplementedError

    def check(self, value, where):
        return value


class String(Type):
    json_type = "string"

    def __init__(self, description="", nullable=False, min_length=0, max_length=None,
                 format=None):
        super().__init__(description, nullable)
        self.min_length, self.max_length, self.format = min_length, max_length, format

    def constraints(self):
        out = {"minLength": self.min_length} if self.min_length else {}
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return {**out, **({"format": self.format} if self.format else {})}

    def accepts(self, value):
        return isinstance(value, str)

    def noun(self):
        return _("a string")

    def check(self, value, where):
        if len(value) < self.min_length:
            raise SchemaError(ngettext("'%(field)s' must be at least %(num)d character long.",
                                       "'%(field)s' must be at least %(num)d characters long.",
                                       self.min_length, field=where))
        if self.max_length is not None and len(value) > self.max_length:
            raise SchemaError(ngettext("'%(field)s' must be at most %(num)d character long.",
                                       "'%(field)s' must be at most %(num)d characters long.",
                                       self.max_length, field=where))
        return value


class Integer(Type):
    json_type = "integer"

    def __init__(self, description="", nullable=False, minimum=None, maximum=None):
        super().__init__(description, nullable)
        self.minimum, self.maximum = minimum, maximum

    def constraints(self):
        bounds = {"minimum": self.minimum, "maximum": self.maximum}
        return {key: value for key, value in bounds.items() if value is not None}

    def accepts(self, value):
        return isinstance(value, int) and not isinstance(value, bool)

    def noun(self):
        return _("an integer")

    def check(self, value, where):
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


class Array(Type):
    json_type = "array"

    def __init__(self, items, description="", nullable=False, max_items=None):
        super().__init__(description, nullable)
        self.items, self.max_items = items, max_items

    def schema(self, components):
        out = super().schema(components)
        out["items"] = self.items.schema(components)
        return out

    def constraints(self):
        return {"maxItems": self.max_items} if self.max_items is not None else {}

    def accepts(self, value):
        return isinstance(value, list)

    def noun(self):
        return _("a list")

    def check(self, value, where):
        if self.max_items is not None and len(value) > self.max_items:
            raise SchemaError(_("'%(field)s' may hold at most %(n)d items.", field=where,
                                n=self.max_items))
        return [self.items.validate(item, f"{where}[{i}]") for i, item in enumerate(value)]


class Map(Type):
    """A JSON object whose keys are free and whose values are all ``values``."""

    json_type = "object"

    def __init__(self, values, description="", nullable=False, max_items=None):
        super().__init__(description, nullable)
        self.values, self.max_items = values, max_items

    def schema(self, components):
        out = super().schema(components)
        out["additionalProperties"] = self.values.schema(components)
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
            raise SchemaError(_("Unknown field '%(field)s'.", field=prefix + unknown[0]))
        missing = [key for key in self.required if key not in value]
        if missing:
            raise SchemaError(_("Missing field '%(field)s'.", field=prefix + missing[0]))
        return {key: self.fields[key].validate(item, prefix + key) for key, item in value.items()}


def Record(fields, name=None, description=""):  # noqa: N802 (reads like the other types)
    """An Object whose fields are all always present: what a response holds."""
    return Object(fields, required=tuple(fields), name=name, description=description)
