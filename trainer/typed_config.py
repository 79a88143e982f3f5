"""Typed YAML configs from dataclasses: the machinery under the experiment config (trainer/config.py).

A `Schema` wraps a root dataclass whose fields are sections (dataclasses themselves; a section may hold a
nested section, e.g. ``model.mapper``). It reads a plain dict (from YAML) into that typed object and reports
*all* problems at once, each saying what was received and what is allowed, with a "did you mean" suggestion
for misspelt keys and choices; applies ``key.sub=value`` command-line overrides; writes YAML that reads
back to an equal object; and describes every key with its type, default and documentation.

Fields carry their documentation in ``metadata["doc"]`` and, where a value has limits, a check in
``metadata["check"]`` (see `setting`). Checks that involve several fields are the schema's ``cross_checks``.

YAML note: plain YAML 1.1 reads ``1e-4`` as a *string* (it wants ``1.0e-4``); our loader reads it as the float
everyone means, and our writer quotes strings that would otherwise be read back as floats. A key repeated in
one mapping is an error, not silently the last one.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

__all__ = ["ConfigError", "Check", "Schema", "Values", "setting", "at_least", "greater_than", "not_empty",
           "members", "suggestion", "show"]


class ConfigError(ValueError):
    """One or more problems in a config; ``errors`` lists them all, ``str()`` one per line."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# ----------------------------------------------------------------------------------------------------
# Fields and value checks: a check returns None when the value is fine, else the requirement it breaks.
# ----------------------------------------------------------------------------------------------------

Check = Callable[[Any], "str | None"]


def setting(default: Any = dataclasses.MISSING, *, doc: str, check: Check | None = None, factory: Any = None):
    """A dataclass field with its documentation (and optional value check) attached as metadata."""
    metadata = {"doc": doc, "check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def at_least(minimum: int) -> Check:
    return lambda value: None if value is None or value >= minimum else f"must be >= {minimum}"


def greater_than(minimum: float) -> Check:
    return lambda value: None if value is None or value > minimum else f"must be > {minimum:g}"


def not_empty(value: str | None) -> str | None:
    return None if value is None or value.strip() else "must not be empty"


def members(allowed: tuple[str, ...], what: str = "item") -> Check:
    """A list check: only values from ``allowed``, each once."""
    def check(values: list[str]) -> str | None:
        unknown = [v for v in values if v not in allowed]
        if unknown:
            hints = [suggestion(v, allowed) for v in unknown]
            listed = ", ".join(f"{v!r}{hint}" for v, hint in zip(unknown, hints))
            return f"must list only {', '.join(allowed)}, got {values}; unknown: {listed}"
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            return f"must list each {what} once, got {values}; repeated: {', '.join(map(repr, duplicates))}"
        return None

    return check


def show(value: Any) -> str:
    """'str 'ten'', 'float 1.5', 'null': how a received value is quoted in messages."""
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def suggestion(word: str, candidates: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or ''."""
    match = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


# ----------------------------------------------------------------------------------------------------
# Type checking of one value against an annotation
# ----------------------------------------------------------------------------------------------------

def is_section(annotation: Any) -> bool:
    """A field whose type is a dataclass is a (nested) section of keys, not one value."""
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def fields_of(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def describe_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [describe_type(a) for a in typing.get_args(annotation) if a is not type(None)]
        nullable = type(None) in typing.get_args(annotation)
        return " or ".join(parts + (["null"] if nullable else []))
    if origin is list:
        return f"list of {describe_type(typing.get_args(annotation)[0])}"
    if origin is dict or annotation is dict:
        return "mapping"
    if is_section(annotation):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def coerce(value: Any, annotation: Any) -> tuple[Any, bool]:
    """(value converted to the annotation, True) if it fits, else (value, False).

    An int fits a float (and becomes one); a bool fits only bool, never int or float.
    """
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value, True
    if origin in (Union, types.UnionType):
        if value is None:
            return None, type(None) in typing.get_args(annotation)
        for option in typing.get_args(annotation):
            if option is type(None):
                continue
            converted, ok = coerce(value, option)
            if ok:
                return converted, True
        return value, False
    if origin is Literal:
        # bool is an int subclass and True == 1, so compare types as well as values.
        allowed = typing.get_args(annotation)
        if isinstance(value, bool) and not value and "no" in allowed:
            return "no", True  # YAML 1.1 reads a bare `no` (e.g. mixed_precision: no) as false
        return value, any(type(value) is type(a) and value == a for a in allowed)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            return value, False
        converted = [coerce(item, item_type) for item in value]
        return [c for c, _ in converted], all(ok for _, ok in converted)
    if origin is dict or annotation is dict:
        return value, isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if annotation is bool:
        return value, isinstance(value, bool)
    if annotation is int:
        return value, isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (float(value) if ok else value), ok
    if annotation is str:
        return value, isinstance(value, str)
    raise TypeError(f"config schema uses an unsupported annotation {annotation!r}")  # a bug in the schema


def _flatten_literals(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return list(typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return [v for a in typing.get_args(annotation) for v in _flatten_literals(a)]
    return []


def _type_error(key: str, value: Any, annotation: Any) -> str:
    expected = describe_type(annotation)
    message = f"{key}: expected {expected}, got {show(value)}"
    literals = [a for a in _flatten_literals(annotation) if isinstance(a, str)]
    if literals and isinstance(value, str):
        message = f"{key}: must be {expected}, got {value!r}{suggestion(value, literals)}"
    nullable = typing.get_origin(annotation) in (Union, types.UnionType) and type(None) in typing.get_args(annotation)
    if nullable and isinstance(value, str) and value.lower() in ("none", "null"):
        message += " (write null, unquoted, for no value)"
    return message


def _yaml_scalar(value: Any) -> str:
    """A value as it is written in YAML: null, true/false, or Python's repr."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


# ----------------------------------------------------------------------------------------------------
# YAML
# ----------------------------------------------------------------------------------------------------

# YAML 1.1 floats need a dot ("1.0e-4"); this also accepts "1e-4" / "2E+5", as every ML config expects.
_FLOAT_WITHOUT_DOT = re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """safe_load plus: ``1e-4`` is a float, and a key repeated in one mapping is an error (not silently last)."""

    def construct_mapping(self, node, deep=False):
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Dumper(yaml.SafeDumper):
    """safe_dump that quotes strings our loader would read as floats (e.g. a name '1e-4'), so files round-trip."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+0123456789"))


def parse_yaml(text: str, source: str) -> Any:
    """YAML text -> Python values; a syntax error becomes a ConfigError naming file, line and column."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        context = error.context
        if context and error.context_mark and mark and error.context_mark.line != mark.line:
            context += f" (started on line {error.context_mark.line + 1})"
        problem = " ".join(filter(None, [context, error.problem]))
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{source}: invalid YAML: {error}"]) from None


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


# ----------------------------------------------------------------------------------------------------
# Checked values, as the cross-checks see them
# ----------------------------------------------------------------------------------------------------

class Values:
    """The values that passed their own checks, by dotted key; ``invalid`` holds the keys already reported."""

    def __init__(self, values: dict[str, Any], invalid: set[str]):
        self.values = values
        self.invalid = invalid

    def _walk(self, key: str) -> tuple[Any, bool]:
        node: Any = self.values
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None, False
            node = node[part]
        return node, True

    def usable(self, *keys: str) -> bool:
        """Every key has a checked value (none of it, nor a section above it, was already reported)."""
        for key in keys:
            parts = key.split(".")
            if any(".".join(parts[: i + 1]) in self.invalid for i in range(len(parts))) or not self._walk(key)[1]:
                return False
        return True

    def get(self, key: str) -> Any:
        return self._walk(key)[0]


# ----------------------------------------------------------------------------------------------------
# The schema
# ----------------------------------------------------------------------------------------------------

class Schema:
    """Read, check, override, write and describe configs of one root dataclass (see the module docstring).

    renamed: old key -> new key; an old key is refused with "was renamed: use <new>" (and a scalar given where
        a section now stands, e.g. the old ``model.mapper: grid``, with "use model.mapper.type: grid").
    cross_checks: problems involving several fields, given the `Values` that passed their own checks.
    """

    def __init__(self, root: type, *, renamed: Mapping[str, str] | None = None,
                 cross_checks: Callable[[Values], list[str]] | None = None):
        self.root = root
        self.sections: dict[str, type] = typing.get_type_hints(root)
        self.renamed = dict(renamed or {})
        self.cross_checks = cross_checks

    # -- keys ------------------------------------------------------------------------------------------

    def _keys(self, prefix: str, cls: type, sections: bool) -> list[str]:
        keys = []
        for f, annotation in fields_of(cls):
            key = f"{prefix}.{f.name}"
            if is_section(annotation):
                keys += ([key] if sections else []) + self._keys(key, annotation, sections)
            else:
                keys.append(key)
        return keys

    def all_keys(self, *, sections: bool = False) -> list[str]:
        """Every value key ("model.mapper.type"), in schema order; with sections=True also "model.mapper"."""
        return [k for name, cls in self.sections.items() for k in self._keys(name, cls, sections)]

    def _mapping_keys(self) -> set[str]:
        """Keys whose value is a free-form mapping (e.g. model.decoder_config), which overrides may reach into."""
        found = set()

        def walk(prefix: str, cls: type) -> None:
            for f, annotation in fields_of(cls):
                if is_section(annotation):
                    walk(f"{prefix}.{f.name}", annotation)
                elif "mapping" in describe_type(annotation):
                    found.add(f"{prefix}.{f.name}")

        for name, cls in self.sections.items():
            walk(name, cls)
        return found

    def unknown_key_error(self, key: str, known_here: list[str] | None = None) -> str:
        """'Unknown config key 'a.b' (did you mean 'a.c'?)', looking in the same section first, then anywhere."""
        if key in self.renamed:
            return f"{key} was renamed: use {self.renamed[key]}"
        section, _, rest = key.partition(".")
        if not rest:  # an unknown top-level key
            names = list(self.sections)
            return f"Unknown config key {key!r}{suggestion(key, names)}; sections are: {', '.join(names)}"
        all_keys = self.all_keys()
        # A known key put in the wrong place is the most likely mistake ("model.max_caption_tokens").
        leaf = key.rsplit(".", 1)[1]
        elsewhere = [k for k in all_keys if k.rsplit(".", 1)[1] == leaf]
        if elsewhere:
            return f"Unknown config key {key!r} (did you mean {elsewhere[0]!r}?)"
        parent = key.rsplit(".", 1)[0]
        hint = (suggestion(key, [k for k in all_keys if k.startswith(parent + ".")])
                or suggestion(key, [k for k in all_keys if k.startswith(section + ".")]) or suggestion(key, all_keys))
        if hint:
            return f"Unknown config key {key!r}{hint}"
        if known_here:
            return f"Unknown config key {key!r}; keys in {parent!r}: {', '.join(known_here)}"
        return f"Unknown config key {key!r}"

    # -- from a plain dict to a checked config -----------------------------------------------------------

    def _check_mapping(self, path: str, cls: type, raw: Any, errors: list[str], invalid: set[str]) -> dict | None:
        """The section's effective values (given, else default), every problem appended to ``errors`` and the
        keys concerned added to ``invalid``; None if the section is not a mapping at all."""
        if raw is None:
            raw = {}  # "model:" with nothing under it means "all defaults"
        if not isinstance(raw, dict):
            if path in self.renamed and not isinstance(raw, (list, dict)):
                shown = raw if isinstance(raw, str) else _yaml_scalar(raw)
                errors.append(f"{path} is now a section: use {self.renamed[path]}: {shown}")
            else:
                errors.append(f"{path}: expected a mapping of keys, got {show(raw)}")
            invalid.add(path)
            return None
        fields = fields_of(cls)
        names = [f.name for f, _ in fields]
        for key in raw:
            if key not in names:
                errors.append(self.unknown_key_error(f"{path}.{key}", names))
        values: dict[str, Any] = {}
        for f, annotation in fields:
            key = f"{path}.{f.name}"
            if is_section(annotation):
                nested = self._check_mapping(key, annotation, raw.get(f.name), errors, invalid)
                if nested is not None:
                    values[f.name] = nested
                continue
            if f.name not in raw:
                if f.default is not dataclasses.MISSING:
                    values[f.name] = f.default
                elif f.default_factory is not dataclasses.MISSING:
                    values[f.name] = f.default_factory()
                else:
                    errors.append(f"{key} is required")
                    invalid.add(key)
                continue
            value, ok = coerce(raw[f.name], annotation)
            if not ok:
                errors.append(_type_error(key, raw[f.name], annotation))
                invalid.add(key)
                continue
            check = f.metadata.get("check")
            problem = check(value) if check else None
            if problem:
                # A check may quote the value itself (e.g. a list with the bad items pointed out).
                errors.append(f"{key}: {problem}" if "got " in problem else f"{key}: {problem}, got {raw[f.name]!r}")
                invalid.add(key)
                continue
            values[f.name] = value
        return values

    @staticmethod
    def _build(cls: type, values: dict[str, Any]) -> Any:
        kwargs = {f.name: Schema._build(annotation, values[f.name]) if is_section(annotation) else values[f.name]
                  for f, annotation in fields_of(cls)}
        return cls(**kwargs)

    def from_dict(self, data: Any) -> Any:
        """Check a nested dict (as read from YAML) into the root dataclass; ConfigError lists every problem."""
        names = list(self.sections)
        if not isinstance(data, dict):
            raise ConfigError([f"config: expected a mapping with sections {', '.join(names)}, got {show(data)}"])
        data = copy.deepcopy(data)  # the config must not share lists/dicts with the caller's data
        errors: list[str] = []
        invalid: set[str] = set()
        for key in data:
            if key not in self.sections:
                errors.append(self.unknown_key_error(str(key)))
        values = {name: self._check_mapping(name, cls, data.get(name), errors, invalid)
                  for name, cls in self.sections.items()}
        if self.cross_checks:
            errors += self.cross_checks(Values({k: v for k, v in values.items() if v is not None}, invalid))
        if errors:
            raise ConfigError(errors)
        return self._build(self.root, values)

    @staticmethod
    def to_dict(cfg: Any) -> dict[str, Any]:
        """The config as plain nested dicts/lists (YAML- and JSON-ready); ``from_dict`` inverts it."""
        return dataclasses.asdict(cfg)

    # -- overrides and files -------------------------------------------------------------------------------

    def apply_overrides(self, data: dict[str, Any], overrides: Sequence[str], errors: list[str]) -> None:
        """Set each ``a.b=value`` in ``data`` (value read as YAML); unknown keys and bad syntax go to ``errors``.

        ``section=value`` replaces a whole section and ``model.decoder_config.n_layer=2`` reaches into a mapping.
        """
        known_keys = set(self.sections) | set(self.all_keys(sections=True))
        mapping_keys = self._mapping_keys()
        for override in overrides:
            if not isinstance(override, str) or "=" not in override:
                errors.append(
                    f"Override {override!r} has no '='; write overrides as key.sub=value, "
                    f"e.g. training.learning_rate=1e-4"
                )
                continue
            key, _, text = override.partition("=")
            key = key.strip()
            parts = key.split(".")
            inside_mapping = any(".".join(parts[:i]) in mapping_keys for i in range(1, len(parts)))
            if (key not in known_keys and not inside_mapping) or "" in parts:
                errors.append(f"{self.unknown_key_error(key)} in override {override!r}")
                continue
            try:
                value = yaml.load(text, Loader=_Loader)
            except yaml.YAMLError as error:
                problem = getattr(error, "problem", None) or str(error)
                errors.append(f"Override {override!r}: the value is not valid YAML ({problem})")
                continue
            # Walk down, creating the mappings the file left out; a non-mapping on the way is reported instead.
            node = data
            for depth, part in enumerate(parts[:-1]):
                if node.get(part) is None:
                    node[part] = {}
                if not isinstance(node[part], dict):
                    where = ".".join(parts[: depth + 1])
                    errors.append(f"Override {override!r}: {where} is {show(node[part])}, not a mapping")
                    break
                node = node[part]
            else:
                node[parts[-1]] = value

    def load(self, path: str | Path, overrides: Sequence[str] = ()) -> Any:
        """Read a YAML file, apply ``key.sub=value`` overrides and check; ConfigError lists every problem (file
        and line for YAML syntax errors)."""
        if isinstance(overrides, str):
            raise TypeError(f"overrides must be a list of 'key.sub=value' strings, got one string {overrides!r}")
        path = Path(path)
        if not path.is_file():
            raise ConfigError([f"Config file '{path}' not found (looked from '{Path.cwd()}')"])
        data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        if data is None:
            data = {}  # an empty file: every required key will be reported missing
        if not isinstance(data, dict):
            raise ConfigError([f"{path}: expected a mapping with sections {', '.join(self.sections)}, got {show(data)}"])
        errors: list[str] = []
        self.apply_overrides(data, list(overrides), errors)
        try:
            cfg = self.from_dict(data)
        except ConfigError as error:
            raise ConfigError(errors + error.errors) from None
        if errors:
            raise ConfigError(errors)
        return cfg

    def save(self, cfg: Any, path: str | Path) -> None:
        """Write ``cfg`` as YAML (sections and keys in schema order); ``load(path)`` gives back an equal config."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_yaml(self.to_dict(cfg)), encoding="utf-8")

    # -- documentation -----------------------------------------------------------------------------------

    def describe(self) -> str:
        """Every key with its type, default and documentation, one per line; nested sections indented."""
        lines = []

        def walk(prefix: str, cls: type, depth: int) -> None:
            for f, annotation in fields_of(cls):
                key, indent, doc = f"{prefix}.{f.name}", "  " * depth, f.metadata.get("doc", "")
                if is_section(annotation):
                    lines.append(f"{indent}{key} (section): {doc}")
                    walk(key, annotation, depth + 1)
                    continue
                if f.default is not dataclasses.MISSING:
                    default = f"default {_yaml_scalar(f.default)}"
                elif f.default_factory is not dataclasses.MISSING:
                    default = f"default {f.default_factory()!r}"
                else:
                    default = "required"
                lines.append(f"{indent}{key} ({describe_type(annotation)}; {default}): {doc}")

        for section, cls in self.sections.items():
            lines.append(f"{section}: {(cls.__doc__ or '').strip().splitlines()[0]}")
            walk(section, cls, 1)
        return "\n".join(lines)
