"""One schema for every config camtrace reads: pydantic sections, YAML 1.2 numbers, one-line
errors by key path, the JSON Schema and the Markdown reference.

Run configs, SimCam presets, training, defences and the generators' settings are all
:class:`Section` subclasses whose fields are declared with :func:`option` (meaning, default,
allowed values); :func:`parse` validates a YAML mapping strictly (no ``"yes"`` for true, no
``5.0`` for an integer) and names a bad key or value in one line (``attacks.runs[2].eps:
...``), and :func:`reference` writes a section's reference from its JSON Schema.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from camtrace.errors import CamtraceError

REQUIRED: Any = ...
"""The default of a field that must be given."""


class Invalid(ValueError):
    """A value a section's own check refuses, at ``key`` below the section (one line)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Rule:
    """What a field accepts beyond its type: ``choices`` (a callable: registries fill at
    import time), bounds on numbers (each item of a list), and ``when``: the key applies only
    to some values of a sibling key (``("source", ("simulate",))``). Pydantic calls it to
    add the same to the field's JSON Schema."""

    choices: Callable[[], Sequence[Any]] | None = None
    minimum: float | None = None
    maximum: float | None = None
    when: tuple[str, tuple[str, ...]] | None = None
    pattern: str | None = None

    def __call__(self, schema: dict[str, Any]) -> None:
        for target in _scalars(schema):
            if self.choices is not None:
                target["enum"] = list(self.choices())
            if self.minimum is not None and target.get("type") in ("integer", "number"):
                target["minimum"] = self.minimum
            if self.maximum is not None and target.get("type") in ("integer", "number"):
                target["maximum"] = self.maximum
            if self.pattern is not None and target.get("type") == "string":
                target["pattern"] = self.pattern
        if self.when is not None:
            schema["x-applies-when"] = {self.when[0]: list(self.when[1])}
        _one_for_a_list(schema)

    def check(self, value: Any) -> None:
        allowed = None if self.choices is None else set(self.choices())  # read once a value
        for index, item in _leaves(value):
            if not self.allows(item, allowed):
                raise BadValue(index, item)

    def allows(self, item: Any, allowed: set[Any] | None) -> bool:
        if isinstance(item, bool) or item is None:
            return True
        if allowed is not None and item not in allowed:
            return False
        if isinstance(item, (int, float)) and (
            (self.minimum is not None and item < self.minimum)
            or (self.maximum is not None and item > self.maximum)
        ):
            return False
        return self.pattern is None or re.fullmatch(self.pattern, str(item)) is not None


class BadValue(ValueError):
    """A value (the ``index``-th item of a list, or the field's own) a :class:`Rule`
    refuses."""

    def __init__(self, index: tuple[int, ...], value: Any) -> None:
        super().__init__(f"{value!r} is not allowed")
        self.index, self.value = index, value


def _one_as_list(cls: type[BaseModel], key: Any, value: Any) -> Any:
    """One value given for a list stands for a list of one (``eps: 4``), unless the field
    takes that value as it is (``targets: all``, ``transfer: {...}``)."""
    field = cls.model_fields.get(key) if isinstance(key, str) else None
    if field is None or isinstance(value, (tuple, list, Mapping)):
        return value
    annotation = field.annotation
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = typing.get_args(annotation) if union else (annotation,)
    if value is None and type(None) in options:
        return value
    literals = {v for o in options if typing.get_origin(o) is Literal for v in typing.get_args(o)}
    variadic = any(
        typing.get_origin(o) is tuple and typing.get_args(o)[-1:] == (...,) for o in options
    )
    return (value,) if variadic and value not in literals else value


def _one_for_a_list(schema: dict[str, Any]) -> None:
    """A list also takes one item alone (``eps: 4``), as :func:`parse` reads it."""
    members = schema.get("anyOf", [schema])
    items = [m["items"] for m in members if m.get("type") == "array" and "items" in m]
    if not items:
        return
    if "anyOf" not in schema:
        keep = ("description", "default", "x-applies-when")
        members = [{k: v for k, v in schema.items() if k not in keep}]
        for key in [k for k in schema if k not in keep]:
            del schema[key]
    schema["anyOf"] = [*members, *items]


def _scalars(schema: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The schemas of the single values a field holds (members of a union, items of a list)."""
    if "anyOf" in schema:
        for member in schema["anyOf"]:
            yield from _scalars(member)
    elif schema.get("type") == "array":
        for item in schema.get("prefixItems", [schema.get("items", {})]):
            yield from _scalars(item)
    elif schema.get("type") not in ("null", "object") and "$ref" not in schema:
        yield schema


def _leaves(value: Any, index: tuple[int, ...] = ()) -> Iterable[tuple[tuple[int, ...], Any]]:
    """The single values of a field, each with its position in nested lists."""
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _leaves(item, (*index, i))
    elif not isinstance(value, (BaseModel, Mapping)):
        yield index, value


def option(
    default: Any,
    doc: str,
    *,
    choices: Callable[[], Sequence[Any]] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    when: tuple[str, tuple[str, ...]] | None = None,
    pattern: str | None = None,
) -> Any:
    """A field of a section: its default (:data:`REQUIRED` if none; a function: computed when
    needed), meaning and rules."""
    rule = Rule(choices, minimum, maximum, when, pattern)
    if callable(default):  # a default read when needed (e.g. from a registry)
        return Field(default_factory=default, description=doc, json_schema_extra=rule)
    if isinstance(default, (dict, list)):
        return Field(
            default_factory=type(default)(default).copy, description=doc, json_schema_extra=rule
        )
    return Field(default, description=doc, json_schema_extra=rule)


def choices_of(cls: type[BaseModel], name: str) -> tuple[Any, ...]:
    """The values field ``name`` of section ``cls`` allows (its choices or its Literal)."""
    rule = rule_of(cls, name)
    if rule.choices is not None:
        return tuple(rule.choices())
    annotation = cls.model_fields[name].annotation
    options = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) is not Literal
        else (annotation,)
    )
    return tuple(v for o in options if typing.get_origin(o) is Literal for v in typing.get_args(o))


def rule_of(cls: type[BaseModel], name: str) -> Rule:
    extra = cls.model_fields[name].json_schema_extra
    return extra if isinstance(extra, Rule) else Rule()


def _shorthand_schema(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """A section with a ``SHORTHAND`` also takes that key's value alone (``- mislnet``)."""
    key = getattr(cls, "SHORTHAND", None)
    if key is None:
        return
    mapping = dict(schema)
    alone = {k: v for k, v in mapping["properties"][key].items() if k not in ("default", "title")}
    schema.clear()
    schema["anyOf"] = [mapping, alone]


class Section(BaseModel):
    """A config section: frozen, unknown keys refused; ``SHORTHAND`` names the key a plain
    string stands for (``- mislnet`` is ``{arch: mislnet}``); ``check`` holds the rules that
    join several keys (raise :class:`Invalid`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_shorthand_schema)
    SHORTHAND: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, raw: Any) -> Any:
        if raw is None:
            return {}
        if cls.SHORTHAND and isinstance(raw, str):
            return {cls.SHORTHAND: raw}
        if isinstance(raw, Mapping):
            return {k: _one_as_list(cls, k, v) for k, v in raw.items()}
        return raw

    @field_validator("*", mode="after")
    @classmethod
    def _rules(cls, value: Any, info: Any) -> Any:
        rule_of(cls, info.field_name).check(value)
        return value

    @model_validator(mode="after")
    def _checks(self) -> Section:
        for name in self.model_fields_set:
            when = rule_of(type(self), name).when
            if when and getattr(self, when[0]) not in when[1]:
                on, allowed = when
                raise Invalid(
                    name, f"applies to {on} {' or '.join(allowed)} only, not {getattr(self, on)}"
                )
        self.check()
        return self

    def check(self) -> None:
        """Rules across keys (none by default)."""

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes``, validated (the keys given stay marked as given)."""
        return type(self).model_validate({**self.given(), **changes})  # sections kept as they are

    def given(self) -> dict[str, Any]:
        """The keys set explicitly (in the YAML or the call), as values."""
        return {name: getattr(self, name) for name in self.model_fields_set}

    def values_of(self, base: type[Section]) -> dict[str, Any]:
        """The values of ``base``'s keys alone: an engine's settings inside a section that
        extends them with keys of its own (what makes a generator, not how it is measured)."""
        return {name: getattr(self, name) for name in base.model_fields}

    def to_dict(self) -> dict[str, Any]:
        """The section as a YAML mapping that parses back to it, every default written out
        (keys that do not apply, and nulls, left out)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value, when = getattr(self, name), rule_of(type(self), name).when
            if value is None or (when and getattr(self, when[0]) not in when[1]):
                continue
            out[name] = yaml_value(value)
        return out


def yaml_value(value: Any) -> Any:
    """A config value as YAML writes it: sections as mappings, tuples as lists."""
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: yaml_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [yaml_value(v) for v in value]
    return value


# -- reading -------------------------------------------------------------------------------------


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, which reads ``1e-3`` (no dot) as a string: floats as 1.2."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
        r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def load_yaml(text: str | bytes, source: str) -> Any:
    """A YAML document with YAML 1.2 numbers; not YAML: one line naming ``source``."""
    try:
        return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise CamtraceError(f"{source}: not valid YAML ({' '.join(str(e).split())})") from None


S = TypeVar("S", bound="Section")


def parse(cls: type[S], raw: Any, where: str = "") -> S:
    """Section ``cls`` from a YAML value, strictly typed; a bad key or value fails in one line
    naming its key path below ``where`` and what is allowed."""
    try:
        return cls.model_validate(_tuples(raw), strict=True)
    except ValidationError as e:
        raise CamtraceError(_message(cls, e.errors()[0], where)) from None


def _tuples(raw: Any) -> Any:
    """YAML lists as tuples (strict validation takes a tuple field from a tuple only)."""
    if isinstance(raw, Mapping):
        return {k: _tuples(v) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return tuple(_tuples(v) for v in raw)
    return raw


def _message(cls: type[BaseModel], error: Mapping[str, Any], where: str) -> str:
    """One line for pydantic's first error: the key path, then what is wrong or allowed."""
    owner, name, path, depth, value = cls, None, where, 0, error["input"]
    annotation: Any = cls
    for part in error["loc"]:
        model = _model_in(annotation)
        if isinstance(part, int):
            path, depth = f"{path}[{part}]", depth + 1
            annotation = _item(annotation)
        elif model is not None and part in model.model_fields:
            owner, name, depth = model, part, 0
            path = f"{path}.{part}" if path else part
            annotation = model.model_fields[part].annotation
    kind, problem = error["type"], error.get("ctx", {}).get("error")
    if isinstance(problem, BadValue):  # the value as given, not as converted
        path += "".join(f"[{i}]" for i in problem.index)
        depth = len(problem.index)
        for i in problem.index:
            value = value[i]
    if isinstance(problem, Invalid):
        return f"{f'{path}.' if path else ''}{problem.key}: {problem}"
    if kind == "extra_forbidden":
        known = _model_in(annotation) or owner
        key = error["loc"][-1]
        return f"{path}.{key}: unknown key; known: {', '.join(known.model_fields)}".lstrip(".")
    if kind == "missing":
        return f"{path}: required"
    if name is None:
        keys = ", ".join(cls.model_fields)
        return f"{where or 'config'}: a mapping with keys {keys}, not {error['input']!r}"
    allowed = describe(owner, name, depth)
    return f"{path}: {yaml_value(value)!r} is not allowed; use {allowed}"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _item(annotation: Any) -> Any:
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is tuple:
            return typing.get_args(arg)[0]
    return annotation


# -- the JSON Schema and the reference -----------------------------------------------------------


def _object_schema(cls: type[BaseModel]) -> dict[str, Any]:
    """A section's JSON Schema as a mapping (not the shorthand's alternative)."""
    schema = cls.model_json_schema()
    defs = schema.get("$defs", {})
    for member in schema.get("anyOf", [schema]):
        if "properties" in member:
            return {**member, "$defs": defs}
    raise ValueError(f"{cls.__name__}: no mapping schema")


def describe(cls: type[BaseModel], name: str, depth: int = 0) -> str:
    """A field's allowed values, in words, from its JSON Schema (``depth``: of an item of
    its lists, nested that deep)."""
    schema = _object_schema(cls)
    prop = schema["properties"][name]
    for _ in range(depth):
        arrays = [p for p in prop.get("anyOf", [prop]) if p.get("type") == "array"]
        if not arrays:
            break
        prop = arrays[0].get("items") or arrays[0].get("prefixItems", [{}])[0]
    return _kind(prop, schema.get("$defs", {}))


def _kind(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    if "$ref" in prop:
        return "mapping"
    if "anyOf" in prop:
        members = prop["anyOf"]
        items = [m["items"] for m in members if m.get("type") == "array" and "items" in m]
        alone = [m for m in members if m not in items]  # one item for a list: said once
        return " | ".join(dict.fromkeys(_kind(p, defs) for p in alone))
    if "enum" in prop or "const" in prop:
        values = prop.get("enum", [prop.get("const")])
        return " | ".join("null" if v is None else str(v) for v in values)
    kind = prop.get("type")
    if kind == "array":
        if "prefixItems" in prop:
            return "[" + ", ".join(_kind(p, defs) for p in prop["prefixItems"]) + "]"
        return f"list of {_kind(prop.get('items', {}), defs)}"
    if kind == "object":
        return "mapping"
    name = {"integer": "int", "number": "float", "boolean": "bool", "string": "str"}.get(
        kind, "null" if kind == "null" else "any"
    )
    lo, hi = prop.get("minimum"), prop.get("maximum")
    if lo is not None and hi is not None:
        return f"{name} {lo:g}-{hi:g}"
    return name if lo is None else f"{name} >= {lo:g}"


def _default(value: Any) -> str:
    if isinstance(value, Mapping) or value is ...:
        return "" if value is not ... else "required"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join("null" if v is None else f"{v}" for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def reference(sections: Mapping[str, type[BaseModel]]) -> str:
    """The Markdown reference, one table per section (key, type, default, meaning), written
    from each section's JSON Schema."""
    out = []
    for title, cls in sections.items():
        schema = _object_schema(cls)
        required = set(schema.get("required", ()))
        out += [f"**{title}**", "", "| key | type / allowed values | default | meaning |"]
        out.append("|---|---|---|---|")
        for name, prop in schema["properties"].items():
            kind = _kind(prop, schema.get("$defs", {})).replace("|", "\\|")
            default = "required" if name in required else _default(prop.get("default", {}))
            default = default.replace("|", "\\|")
            when = prop.get("x-applies-when")
            only = "".join(f" ({k} {' or '.join(v)} only)" for k, v in (when or {}).items())
            doc = prop.get("description", "")
            out.append(
                f"| `{name}` | {kind} | {default.replace('|', chr(92) + '|')} | {doc}{only} |"
            )
        out.append("")
    return "\n".join(out)


def json_schema(cls: type[BaseModel], title: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file, for editors to complete and check."""
    schema = cls.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": title}
