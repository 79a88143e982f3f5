"""Protects the import direction the file tree promises: the library (`captioning/`), the rating core
(`rating/`) and the HTTP server (`server/`) never import gradio, the trainer or the app, so the REST server,
the CLI and batch jobs can use them without a UI or training stack (app.py mounts the page on the server,
not the other way round). Checked on the source (every import statement, also inside functions),
not on what happens to be loaded at run time."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

FORBIDDEN = {"gradio", "gradio_client", "trainer", "app"}
LIBRARIES = ("captioning", "rating", "server")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) for each absolute import in a file; relative imports stay in the package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.append((node.lineno, str(node.args[0].value).split(".")[0]))
    return found


def test_library_and_rating_never_import_ui_trainer_or_app():
    offences = []
    for package in LIBRARIES:
        files = sorted((ROOT / package).rglob("*.py"))
        assert files, f"no Python files under {package}/"
        for path in files:
            for line, module in imported_modules(path):
                if module in FORBIDDEN:
                    offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offences, "the library must not depend on the UI, trainer or app:\n" + "\n".join(offences)


def test_the_check_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    import gradio as gr\n    from trainer.config import load_config\n")
    assert imported_modules(sample) == [(1, "os"), (4, "gradio"), (5, "trainer")]
