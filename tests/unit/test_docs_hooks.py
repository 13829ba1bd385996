"""scripts/docs_hooks.py: repository links in docs pages, and the OpenAPI document the API
reference is rendered from."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _page(src_uri: str) -> Any:
    return SimpleNamespace(file=SimpleNamespace(src_uri=src_uri))


def test_links_outside_docs_become_code_and_page_links_stay() -> None:
    hooks = _hooks()
    markdown = ("See [the CLI](../src/offload/cli.py), [`tests/x.py`](../tests/x.py), "
                "[tasks](http-tasks.md#retries), [top](#top), [site](https://example.com) "
                "and ![img](../bench/chart.png).")
    out = hooks.on_page_markdown(markdown, _page("runbook.md"), None, None)
    assert "the CLI (`src/offload/cli.py`)" in out
    assert "[`tests/x.py`]" not in out and "`tests/x.py`" in out
    for kept in ("[tasks](http-tasks.md#retries)", "[top](#top)", "[site](https://example.com)",
                 "![img](../bench/chart.png)"):
        assert kept in out
    nested = hooks.on_page_markdown("[api](../index.md) [code](../../src/a.py)",
                                    _page("reference/cli.md"), None, None)
    assert nested == "[api](../index.md) code (`src/a.py`)"


def test_openapi_document_shows_problem_bodies() -> None:
    document = _hooks().openapi_document()
    assert "/v1/tasks" in document["paths"]
    text = json.dumps(document["paths"])
    assert "HTTPValidationError" not in text
    answers = [op["responses"]["422"] for ops in document["paths"].values()
               for op in ops.values() if "422" in op.get("responses", {})]
    assert len(answers) > 10
    for answer in answers:
        assert "#/components/schemas/Problem" in json.dumps(answer["content"]), answer


def test_settings_table_lists_every_setting_with_its_docstring() -> None:
    from offload import config

    table = _hooks().settings_table()
    rows = [line for line in table.splitlines()[2:] if line.startswith("| `OFFLOAD_")]
    assert len(rows) == len(config._ENV_FIELDS)
    by_name = {row.split("`")[1]: row for row in rows}
    assert "`30.0`" in by_name["OFFLOAD_LEASE_S"]
    assert "a dead engine's work is rescued" in by_name["OFFLOAD_LEASE_S"]
    assert "OFFLOAD_WEBHOOK_SECRET_FILE" in by_name["OFFLOAD_WEBHOOK_SECRET"]
    bare = [name for name, row in by_name.items() if not row.rstrip(" |").split("|")[-1].strip()]
    assert not bare, f"give these a docstring in offload/config.py (or a note in "\
                     f"scripts/docs_hooks.py): {bare}"


def test_api_page_keeps_one_title() -> None:
    markdown = "# HTTP API\n\n```sh\n# a comment\n```\n\n# offload 0.1.0\n\n## tasks\n"
    out = _hooks().on_page_markdown(markdown, _page("reference/api.md"), None, None)
    assert out.splitlines() == ["# HTTP API", "", "```sh", "# a comment", "```", "", "",
                                "## tasks"]
