"""study.toml errors in the researcher's terms: the file, the field, what is allowed.

pydantic reports locations with its own union tags and messages with its own
prefixes; these helpers turn them into 'study.toml: models[2].factors: ...'.
"""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any

from pydantic import BaseModel

FIELD_PREFIX = re.compile(r"[a-z_]+(\[\d+\])?")


class ConfigError(ValueError):
    """A study.toml problem; the message names the file, the field and what is allowed."""


def _format_location(loc: tuple[Any, ...], data: Any) -> str:
    """('models', 2, 'factors') -> 'models[2].factors'; drops pydantic's union tags."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
            node = node[item] if isinstance(node, list) and item < len(node) else None
            continue
        key = str(item)
        if isinstance(node, dict) and key not in node and node.get("kind") == key:
            continue  # a discriminated-union tag such as 'gaussian', not a key
        if key.startswith(("function-", "tagged-union[")):
            continue
        parts.append(key)
        node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts)


def _allowed_keys(loc: tuple[Any, ...], data: Any, root: type[BaseModel]) -> list[str]:
    """The keys allowed where an unknown key was found, for the error message."""
    annotation: Any = root
    node = data
    for item in loc[:-1]:
        if isinstance(item, int):
            annotation = _item_annotation(annotation)
            node = node[item] if isinstance(node, list) and item < len(node) else None
            continue
        if isinstance(node, dict) and str(item) not in node and node.get("kind") == item:
            continue  # a discriminated-union tag
        model = _model_for(annotation, node)
        if model is None:
            return []
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        if str(item) not in fields:
            return []
        annotation = fields[str(item)].annotation
        node = node.get(str(item)) if isinstance(node, dict) else None
    model = _model_for(annotation, node)
    return [f.alias or name for name, f in model.model_fields.items()] if model else []


def _item_annotation(annotation: Any) -> Any:
    """list[X] (possibly Optional or Annotated) -> X."""
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is list or arg is list:
            return _item_annotation(arg)
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0]
    return annotation


def _model_for(annotation: Any, value: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation means for this value (unions chosen by 'kind')."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is Annotated:
        return _model_for(typing.get_args(annotation)[0], value)
    models = [m for a in typing.get_args(annotation) if (m := _model_for(a, value))]
    if len(models) == 1:
        return models[0]
    kind = value.get("kind") if isinstance(value, dict) else None
    for model in models:
        tag = model.model_fields.get("kind")
        if tag is not None and kind in typing.get_args(tag.annotation):
            return model
    return None


def describe_error(error: dict[str, Any], data: Any, filename: str, root: type[BaseModel]) -> str:
    """One pydantic error as 'file: field: what is wrong (allowed: ...)'."""
    loc = tuple(error.get("loc", ()))
    where = _format_location(loc, data) or "(top level)"
    kind = error.get("type", "")
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc, data, root)
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{filename}: {where}: unknown key{hint}"
    if kind == "missing":
        return f"{filename}: {where}: required field is missing"
    if kind in ("literal_error", "union_tag_invalid"):
        got = error.get("input")
        if kind == "union_tag_invalid":
            got = error.get("ctx", {}).get("tag")
            expected = error.get("ctx", {}).get("expected_tags", "")
            return f"{filename}: {where}: unknown kind {got!r} (allowed: {expected})"
        expected = error.get("ctx", {}).get("expected", message)
        return f"{filename}: {where}: {got!r} is not allowed (allowed: {expected})"
    if kind == "union_tag_not_found":
        expected = error.get("ctx", {}).get("tag", "kind")
        return f"{filename}: {where}: missing {expected!r} (it selects the entry's type)"
    if kind == "value_error" and where == "(top level)":
        # cross-section rules carry their own locations
        return "\n".join(f"{filename}: {part}" for part in message.split("\n"))
    if kind == "value_error":
        # a section-level rule names its field first: "k: task 'matching' needs k"
        field, sep, rest = message.partition(": ")
        if sep and FIELD_PREFIX.fullmatch(field):
            return f"{filename}: {where}.{field}: {rest}"
    got = error.get("input")
    shown = ""
    if not isinstance(got, (dict, list)) and got is not None and repr(got) not in message:
        shown = f" (got {got!r})"
    return f"{filename}: {where}: {message}{shown}"
