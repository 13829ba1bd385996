"""MkDocs hooks for the offload docs site (mkdocs.yml ``hooks:``).

* ``on_pre_build`` writes the engine's OpenAPI document to ``build/docs/openapi.json``
  (from the app factory, offline, no database opened); ``docs/reference/api.md``
  renders it with neoteroi's ``[OAD(...)]`` tag.
* ``on_page_markdown`` turns links to repository files outside ``docs/`` (``../src/…``,
  ``../tests/…``) into code spans naming the file, so pages may point at the code and
  tests while ``--strict`` still fails on broken links between pages.
"""

from __future__ import annotations

import json
import posixpath
import re
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPENAPI = ROOT / "build" / "docs" / "openapi.json"

_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\((?!https?:|mailto:|#)([^)\s]+)\)")


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document the engine serves at ``/openapi.json``."""
    from offload.api.app import create_app
    from offload.config import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), webhook_secret="whsec_" + "A" * 44,
                            database_url=f"sqlite:///{tmp}/unused.db")
        document: dict[str, Any] = create_app(settings, run_scheduler=False).openapi()
    return _problem_bodies(document)


def _problem_bodies(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents its default ``HTTPValidationError`` for every 422; offload's
    problem handler answers a ``Problem`` body instead, so the reference shows that."""
    problem = {"$ref": "#/components/schemas/Problem"}
    if "Problem" not in document.get("components", {}).get("schemas", {}):
        return document
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422", {})
            content = answer.get("content", {})
            if "HTTPValidationError" in json.dumps(content):
                answer["content"] = {"application/problem+json": {"schema": problem}}
                answer["description"] = "Invalid request; errors[].field names each problem"
    schemas = document["components"]["schemas"]
    if "HTTPValidationError" not in json.dumps(document.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return document


def on_pre_build(config: Any, **kwargs: Any) -> None:
    OPENAPI.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(openapi_document(), indent=1, sort_keys=False)
    if not OPENAPI.exists() or OPENAPI.read_text(encoding="utf-8") != text:
        OPENAPI.write_text(text, encoding="utf-8")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    page_dir = posixpath.dirname(page.file.src_uri)

    def replace(match: re.Match[str]) -> str:
        text, target = match.group(1), match.group(2)
        path = posixpath.normpath(posixpath.join(page_dir, target.split("#", 1)[0]))
        if not path.startswith("../"):
            return match.group(0)  # a page or asset of the site: mkdocs checks it
        repo_path = path.removeprefix("../")
        return text if text.strip("`") == repo_path else f"{text} (`{repo_path}`)"

    return _LINK.sub(replace, markdown)
