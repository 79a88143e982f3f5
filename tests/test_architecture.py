"""Protects the import direction the file tree promises: the library (`captioning/`), the rating core
(`rating/`) and the HTTP server (`server/`) never import gradio, the trainer, the page (`page/`) or the app, so
the REST server, the CLI and batch jobs can use them without a UI or training stack (page/server.py mounts the
page on the server, not the other way round). Checked on the source (every import statement, also inside functions),
not on what happens to be loaded at run time."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

from helpers import ROOT

FORBIDDEN = {"gradio", "gradio_client", "trainer", "page", "app"}
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


# --- No import circles -------------------------------------------------------------------------------------------
# Two modules that import each other (even inside a function) work only by the luck of which one is loaded first,
# and they cannot be read or moved apart. Every first-party package is found on disk, so a new package (the page)
# is checked without touching this file.


def first_party_modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the project: each top-level folder with an `__init__.py` (its
    sub-packages too) and the top-level app.py. A package's name stands for its `__init__.py`."""
    modules = {}
    for package in sorted(p for p in root.iterdir() if (p / "__init__.py").is_file()):
        for path in sorted(package.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if not all((root.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
                continue  # a script in a data folder is not importable as part of the package
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    if (root / "app.py").is_file():
        modules["app"] = root / "app.py"
    return modules


def module_dependencies(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The first-party modules `name` imports anywhere in its file (also inside functions, relative imports
    resolved). `import a.b.c` and `from a.b import c` depend on the module a.b.c when it exists, else on the
    nearest package above it that does; an import of another project's module is not followed."""

    def resolve(dotted: str) -> str | None:
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in modules:
                return ".".join(parts[:end])
        return None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                base = ".".join(p for p in (base, node.module) if p)
            else:
                base = node.module or ""
            # `from a.b import c`: the submodule a.b.c when there is one, else a name defined in a.b
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            targets = [str(node.args[0].value)]
        found |= {module for module in map(resolve, targets) if module}
    return found - {name}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (a list of modules that starts and ends with the same one) per group of modules that reach
    each other: Tarjan's strongly connected components, then the shortest way round from the group's first
    module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(node: str) -> None:  # recursion depth is bounded by the number of modules (a few hundred)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                group.append(stack.pop())
                on_stack.discard(group[-1])
                if group[-1] == node:
                    break
            if len(group) > 1:
                groups.append(set(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    circles = []
    for group in groups:
        start = min(group)
        paths = {start: [start]}  # breadth first inside the group: the shortest way back to start
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if start in graph[node]:  # no module lists itself, so node is not start here
                circles.append(paths[node] + [start])
                break
            for nxt in sorted(graph[node] & group):
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    queue.append(nxt)
    return sorted(circles)


def project_import_graph(root: Path) -> dict[str, set[str]]:
    modules = first_party_modules(root)
    return {name: module_dependencies(name, path, modules) for name, path in modules.items()}


def test_no_import_circles():
    graph = project_import_graph(ROOT)
    assert {"app", "captioning", "page", "rating", "server", "trainer"} <= {name.split(".")[0] for name in graph}
    circles = import_circles(graph)
    assert not circles, "\n".join("import circle: " + " -> ".join(circle) for circle in circles)


def test_the_circle_check_sees_circles_through_functions_and_relative_imports(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("from .a import A\n")
    (tmp_path / "pkg" / "a.py").write_text("A = 1\n\ndef f():\n    from .sub import b\n")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("import pkg.sub.c\nB = 2\n")
    (tmp_path / "pkg" / "sub" / "c.py").write_text("def g():\n    from ..a import A\n")
    (tmp_path / "app.py").write_text("import pkg.sub\n")
    graph = project_import_graph(tmp_path)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": {"pkg.sub.c"},
                     "pkg.sub.c": {"pkg.a"}, "app": {"pkg.sub"}}
    assert import_circles(graph) == [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]
    (tmp_path / "pkg" / "sub" / "c.py").write_text("X = 3\n")  # the circle broken: nothing to report
    assert import_circles(project_import_graph(tmp_path)) == []


def test_the_library_never_imports_its_entry_points():
    """captioning/commands/ (the batch CLI, the Ray engine) is built on the library, never the other way round."""
    graph = project_import_graph(ROOT)
    offences = [f"{module} imports {target}" for module, targets in sorted(graph.items())
                if module.startswith("captioning") and not module.startswith("captioning.commands")
                and module != "captioning.__main__"
                for target in sorted(targets) if target.startswith("captioning.commands")]
    assert not offences, "the library must not import its entry points:\n" + "\n".join(offences)
