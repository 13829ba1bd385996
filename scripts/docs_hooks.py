"""MkDocs hooks for the offload docs site (mkdocs.yml ``hooks:``).

* ``on_pre_build`` writes the engine's OpenAPI document to ``build/docs/openapi.json``
  (from the app factory, offline, no database opened); ``docs/reference/api.md``
  renders it with neoteroi's ``[OAD(...)]`` tag.
* ``on_page_markdown`` replaces ``<!-- settings-table -->`` with every ``OFFLOAD_*``
  setting, its default and its docstring from ``offload.config``, and turns links to
  repository files outside ``docs/`` (``../src/…``, ``../tests/…``) into code spans
  naming the file, so pages may point at the code and tests while ``--strict`` still
  fails on broken links between pages.
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
    from offload.app import create_app
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


SETTINGS_MARKER = "<!-- settings-table -->"

# Settings whose field in offload.config carries no docstring.
_SETTING_NOTES = {
    "host": "Address to bind.",
    "port": "Port to listen on.",
    "data_dir": "Where the SQLite file, the node identity and dev's generated secrets live.",
    "allow_private": "Let outbound calls reach any private address (prefer "
                     "`OFFLOAD_OUTBOUND_ALLOW`).",
    "rescue_every_s": "How often expired leases are looked for and rescued.",
    "dashboard_password_hash": "The dashboard login's password hash "
                               "(`offload dashboard hash-password`).",
    "session_secret": "Key signing dashboard session cookies; changing it logs everyone out.",
    "log_level": "`debug`, `info`, `warning` or `error` (JSON lines on stderr).",
    "log_payloads": "Not used: logs carry ids and statuses, never payloads.",
}


def settings_table() -> str:
    """Every ``OFFLOAD_*`` setting with its default and meaning, from ``offload.config``."""
    import ast
    import dataclasses

    from offload import config

    notes = dict(_SETTING_NOTES)
    tree = ast.parse(Path(config.__file__).read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    for stmt, after in zip(cls.body, cls.body[1:], strict=False):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and \
                isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and \
                isinstance(after.value.value, str):
            notes[stmt.target.id] = " ".join(after.value.value.split())
    fields = {f.name: f for f in dataclasses.fields(config.Settings)}
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for env, name in config._ENV_FIELDS.items():  # noqa: SLF001 - the source of truth
        default = fields[name].default
        shown = "–" if default in (None, (), dataclasses.MISSING) else f"`{default}`"
        if isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        note = notes.get(name, "").replace("``", "`").replace("|", "\\|")
        if env in config._SECRETS:  # noqa: SLF001
            note += f" Also read from the file named by `OFFLOAD_{env}_FILE`."
        rows.append(f"| `OFFLOAD_{env}` | {shown} | {note.strip()} |")
    return "\n".join(rows)


def _one_title(markdown: str) -> str:
    """Drop the rendered document's own ``# offload x.y`` title: a second top heading
    would hide the page's table of contents."""
    lines = markdown.splitlines()
    titles, fenced = [], False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("# "):
            titles.append(i)
    for i in reversed(titles[1:]):
        del lines[i]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_table())
    if page.file.src_uri == "reference/api.md":
        markdown = _one_title(markdown)
    page_dir = posixpath.dirname(page.file.src_uri)

    def replace(match: re.Match[str]) -> str:
        text, target = match.group(1), match.group(2)
        path = posixpath.normpath(posixpath.join(page_dir, target.split("#", 1)[0]))
        if not path.startswith("../"):
            return match.group(0)  # a page or asset of the site: mkdocs checks it
        repo_path = path.removeprefix("../")
        return text if text.strip("`") == repo_path else f"{text} (`{repo_path}`)"

    return _LINK.sub(replace, markdown)
