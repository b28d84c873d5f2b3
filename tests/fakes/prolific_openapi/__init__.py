"""Prolific's published OpenAPI document (trimmed copy) and checks against it.

The fake Prolific API validates every request it handles and every answer it
gives with `check_request` / `check_response`; a mismatch is recorded as an
internal error of the fake, which fails the test that caused it. Source and
retrieval date of the document: README.md in this folder.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator

HERE = Path(__file__).parent
DOCUMENT = HERE / "publicapi.yaml"

# Query parameters the document does not list for an operation but Prolific's own CLI
# (github.com/prolific-oss/cli, client/client.go) sends: limit/offset paging.
CLI_QUERY = {
    ("GET", "/api/v1/studies/{id}/submissions/"): {"limit", "offset"},
    ("GET", "/api/v1/participant-groups/"): {"limit", "offset"},
    ("GET", "/api/v1/workspaces/"): {"limit", "offset"},
}
# Values the service has been reported to send that the document's enums do not list
# (issue 13): a submission whose approval is still being processed. Answers carrying them
# are accepted so the fake can reproduce it; the client must not depend on the enum.
OFF_SPEC_VALUES = {"PROCESSING"}


def _any_of(node: Any) -> Any:
    """oneOf read as anyOf: the document's branches overlap (SelectFilter and RangeFilter
    both accept {filter_id} alone, with no discriminator), so oneOf rejects every filter."""
    if isinstance(node, dict):
        return {("anyOf" if k == "oneOf" else k): _any_of(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_any_of(v) for v in node]
    return node


@cache
def spec() -> dict:
    return _any_of(yaml.safe_load(DOCUMENT.read_text(encoding="utf-8")))


@cache
def _templates() -> list[tuple[re.Pattern, str]]:
    out = []
    # literal segments first: /submissions/bulk-approve/ is not /submissions/{id}/
    for template in sorted(spec()["paths"], key=lambda t: t.count("{")):
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", template.rstrip("/"))
        out.append((re.compile(f"^{pattern}/?$"), template))
    return out


def template_of(path: str) -> str | None:
    for pattern, template in _templates():
        if pattern.match(path):
            return template
    return None


def operation(method: str, path: str) -> tuple[str, dict] | None:
    template = template_of(path)
    if template is None:
        return None
    op = spec()["paths"][template].get(method.lower())
    return (template, op) if op is not None else None


def _validate(schema: dict, value: Any, where: str) -> list[str]:
    root = {**schema, "components": spec()["components"]}
    problems = []
    for error in OAS30Validator(root).iter_errors(value):
        if isinstance(error.instance, str) and error.instance in OFF_SPEC_VALUES:
            continue
        place = "/".join(str(p) for p in error.absolute_path) or "(top)"
        problems.append(f"{where}: {place}: {error.message[:200]}")
    return problems


def _properties(schema: dict) -> set[str] | None:
    """Top-level property names a schema declares (following $ref/allOf); None: open."""
    if "$ref" in schema:
        return _properties(spec()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    if schema.get("additionalProperties") or schema.get("anyOf"):
        return None
    if schema.get("type") not in (None, "object"):
        return None
    names = set(schema.get("properties") or {})
    for part in schema.get("allOf") or []:
        more = _properties(part)
        if more is None:
            return None
        names |= more
    return names if names or schema.get("allOf") else None


def _query_names(op: dict) -> set[str]:
    names = set()
    for param in op.get("parameters") or []:
        if param.get("in") != "query":
            continue
        schema = param.get("schema") or {}
        props = _properties(schema) if "$ref" in schema else None
        # an object parameter in form style (the default, exploded) sends its properties
        if props is None and "$ref" in schema:
            target = spec()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            for branch in target.get("anyOf") or []:
                props = (props or set()) | (_properties(branch) or set())
        names |= props or {param["name"]}
    return names


def check_request(method: str, path: str, query: dict[str, Any], body: Any) -> list[str]:
    found = operation(method, path)
    where = f"request {method} {path}"
    if found is None:
        return [f"{where}: no such operation in Prolific's document"]
    template, op = found
    problems = []
    allowed = _query_names(op) | CLI_QUERY.get((method, template), set())
    for name in query:
        if name not in allowed:
            problems.append(f"{where}: query parameter {name!r} is not documented "
                            f"(documented: {sorted(allowed)})")
    content = ((op.get("requestBody") or {}).get("content") or {}).get("application/json")
    if content is not None and body is not None:
        problems += _validate(content["schema"], body, where)
        props = _properties(content["schema"])
        if isinstance(body, dict) and props is not None:
            problems += [f"{where}: field {k!r} is not in the document" for k in body
                         if k not in props]
    elif (op.get("requestBody") or {}).get("required") and body is None:
        problems.append(f"{where}: a JSON body is required")
    return problems


def check_response(method: str, path: str, status: int, body: Any) -> list[str]:
    """The answer conforms to the documented response of that status; error answers (4xx/5xx)
    are not described by the document and are not checked."""
    found = operation(method, path)
    where = f"response {status} to {method} {path}"
    if found is None or status >= 400:
        return []
    _, op = found
    documented = op.get("responses") or {}
    if str(status) not in documented:
        return [f"{where}: status {status} is not documented ({sorted(documented)})"]
    content = (documented[str(status)].get("content") or {}).get("application/json")
    if content is None or status == 204:
        return []
    problems = _validate(content["schema"], body, where)
    props = _properties(content["schema"])
    if isinstance(body, dict) and props is not None:
        # links and counts ride along every paginated listing; the document omits them
        problems += [f"{where}: field {k!r} is not in the document" for k in body
                     if k not in props and k not in ("_links", "meta")]
    return problems
