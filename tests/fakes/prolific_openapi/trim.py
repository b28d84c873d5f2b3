"""Rebuild publicapi.yaml from Prolific's full published document (see README.md).

    python tests/fakes/prolific_openapi/trim.py FULL.yaml > tests/fakes/prolific_openapi/publicapi.yaml

Keeps the paths the fake serves and every schema they reference, unchanged.
"""

from __future__ import annotations

import json
import sys

import yaml

PATHS = [
    "/api/v1/users/me/",
    "/api/v1/workspaces/",
    "/api/v1/workspaces/{workspace_id}/balance/",
    "/api/v1/filters/",
    "/api/v1/studies/",
    "/api/v1/studies/{id}/",
    "/api/v1/studies/{id}/transition/",
    "/api/v1/studies/{id}/test-study",
    "/api/v1/studies/{id}/submissions/",
    "/api/v1/submissions/",
    "/api/v1/submissions/{id}/",
    "/api/v1/submissions/{id}/transition/",
    "/api/v1/submissions/bulk-approve/",
    "/api/v1/submissions/bonus-payments/",
    "/api/v1/bulk-bonus-payments/{id}/pay/",
    "/api/v1/researchers/participants/",
    "/api/v1/participant-groups/",
    "/api/v1/participant-groups/{id}/",
    "/api/v1/participant-groups/{id}/participants/",
]


def refs(node, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)


def trim(full: dict) -> dict:
    paths = {p: full["paths"][p] for p in PATHS}
    schemas = full["components"]["schemas"]
    keep: set[str] = set()
    todo: set[str] = set()
    refs(paths, todo)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        refs(schemas[name], todo)
    return {"openapi": full["openapi"], "info": full["info"], "paths": paths,
            "components": {"schemas": {n: schemas[n] for n in sorted(keep)},
                           "securitySchemes": full["components"]["securitySchemes"]}}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        full = yaml.safe_load(handle)
    print("# Trimmed copy of Prolific's public API document; source and date: README.md")
    # json round trip drops YAML anchors, so the copy reads without the original's aliases
    print(yaml.safe_dump(json.loads(json.dumps(trim(full))), sort_keys=False, width=100))
