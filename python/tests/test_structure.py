"""The package's imports flow one way (README, "Architecture"): cli -> steps / api ->
analysis / report / tracking -> model -> train -> data -> module, with the small shared
helpers (errors, io, progress, versions) below them all. No module imports one of a
higher layer, and no group of modules imports itself in a circle. Imports inside
functions count: they are how the code is layered, not how it is loaded."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pertcontrast"
LAYERS = {  # higher imports lower; one layer may import within itself
    "__main__": 8, "cli": 7, "steps": 6, "api": 6,
    "analysis": 5, "report": 5, "tracking": 5, "model_source": 5,
    "model": 4, "model_folder": 4, "train": 3, "data": 2, "module": 1,
    "errors": 0, "io": 0, "outputs": 0, "progress": 0, "versions": 0,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports (``from a import b``
    names the module ``a.b`` when that is one)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("pertcontrast")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pertcontrast"):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                submodules = [n for n in names if n in modules]
                found |= set(submodules) if len(submodules) == len(names) else {node.module, *submodules}
        edges[name] = {target for target in found if target in modules and target != name}
    assert len(edges) > 100, f"found only {len(edges)} modules under {PACKAGE}"
    return edges


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "pertcontrast"


def test_every_module_has_a_layer():
    unknown = {layer(name) for name in imports()} - set(LAYERS) - {"pertcontrast"}
    assert not unknown, f"add these to LAYERS (and the README's architecture section): {sorted(unknown)}"


def test_no_module_imports_a_higher_layer():
    upward = sorted((source, target) for source, targets in imports().items() if layer(source) != "pertcontrast"
                    for target in targets if layer(target) != "pertcontrast"
                    and LAYERS[layer(target)] > LAYERS[layer(source)])
    assert not upward, upward


def test_the_package_facade_only_re_exports():
    """``pertcontrast/__init__`` gives the version and, lazily, the model class; nothing
    below imports it for anything but the version (which lives in pertcontrast.versions)."""
    edges = imports()
    assert not [source for source, targets in edges.items() if "pertcontrast" in targets]


def test_no_import_circles():
    edges = imports()
    circles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while not component or node not in component:
                component.add(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1:
                circles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not circles, circles


@pytest.mark.parametrize("source", ["module", "data", "train"])
def test_the_core_does_not_know_the_command_line(source):
    """Below the model nothing imports click: the library raises plain exceptions."""
    for path in (PACKAGE / source).rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert "click" not in names, path


# a message may give a whole command line to run: its flags are that command's, not a
# setting's name for the CLI to phrase
COMMAND_LINES = {
    ("tracking/model_registry.py", "VERSION --alias "),  # 'pertcontrast registry promote NAME VERSION --alias A'
    ("tracking/python_api.py", "pertcontrast mlflow sync %s --mlflow-uri ..."),
}
FLAG = re.compile(r"--[a-z]")
LOGGING_CALLS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _is_message_call(node: ast.AST) -> bool:
    """A logging call (``log.info(...)``) or an exception being made (``ParameterError(...)``)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in LOGGING_CALLS:
        return isinstance(func.value, ast.Name) and func.value.id in {"log", "logger", "logging", "LOG"}
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name.endswith(("Error", "Exception"))


def _checked_lists(function: ast.AST) -> list[ast.AST]:
    """The lists a function's checks loop over to raise their messages (``for ok, message in
    checks: ... raise ParameterError(message)``): what is assigned to the loop's iterable."""
    lists = []
    for loop in ast.walk(function):
        if isinstance(loop, ast.For) and isinstance(loop.iter, ast.Name) and \
                any(isinstance(node, ast.Raise) for node in ast.walk(loop)):
            lists += [node.value for node in ast.walk(function) if isinstance(node, ast.Assign)
                      and any(isinstance(t, ast.Name) and t.id == loop.iter.id for t in node.targets)]
    return lists


def flag_messages(path: Path) -> list[str]:
    """The string constants (f-string parts too) of ``path``'s raise statements, exceptions,
    logging calls and check lists that name a command-line flag."""
    tree = ast.parse(path.read_text())
    messages = [node for node in ast.walk(tree) if isinstance(node, ast.Raise) or _is_message_call(node)]
    messages += [listed for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                 for listed in _checked_lists(node)]
    found = []
    for node in messages:
        for part in ast.walk(node):
            if isinstance(part, ast.Constant) and isinstance(part.value, str) and FLAG.search(part.value):
                found.append(f"{path.relative_to(PACKAGE)}:{part.lineno}: {part.value!r}")
    return found


def test_the_library_names_settings_not_flags():
    """Below the CLI, errors and log lines name a setting through ``param=``, ``{param}``
    or ``{param:FIELD}`` (errors.py), which the CLI phrases as its flag and a notebook sees
    as the field: the library does not know the command line's flags."""
    paths = [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts]
    assert len(paths) > 100
    found = sorted({message for path in paths for message in flag_messages(path)})
    allowed = {m for m in found if any(m.startswith(f"{file}:") and text in m for file, text in COMMAND_LINES)}
    assert len(allowed) == len(COMMAND_LINES), f"COMMAND_LINES lists a line that is gone: {sorted(allowed)}"
    assert not set(found) - allowed, "\n".join(sorted(set(found) - allowed))
