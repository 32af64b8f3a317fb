"""The package's structure, checked so it stays as ``docs/architecture.md`` draws it.

Imports flow one way, bottom to top, with no cycle; no module uses another module's
private names; the public surface is exactly the names below. Every import counts,
including those made only for type checking or inside a function: a cycle hidden
behind ``TYPE_CHECKING`` is still two modules that cannot be understood apart.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import omni_edit

PACKAGE = Path(omni_edit.__file__).parent

# Bottom to top. A module may import modules of its own layer or of lower layers only;
# the layers are exclusive, so `_media` and `_http` may not import each other upward.
LAYERS: list[list[str]] = [
    ["omni_edit._version", "omni_edit._constants"],
    ["omni_edit._redact"],
    ["omni_edit._models"],
    ["omni_edit._exceptions"],
    ["omni_edit._wire"],
    ["omni_edit._media"],
    ["omni_edit._http"],
    ["omni_edit._polling"],
    ["omni_edit._batch"],
    ["omni_edit._config"],
    ["omni_edit._client"],
    ["omni_edit.webhooks", "omni_edit.emulator"],
    ["omni_edit._cli", "omni_edit.__main__"],
    ["omni_edit"],  # the package's __init__: re-exports only
]

PUBLIC = {
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "BatchProgress",
    "BatchStatus",
    "Client",
    "Cost",
    "DownloadError",
    "EditInput",
    "EditOutcome",
    "EditRequest",
    "EventLoopError",
    "IdempotencyConflictError",
    "InsufficientQuotaError",
    "JournalError",
    "MalformedResponseError",
    "MediaInfo",
    "NotFoundError",
    "OmniEditError",
    "PermissionDeniedError",
    "PollPolicy",
    "RateLimitError",
    "RequestTooLargeError",
    "ResultExpiredError",
    "S3Storage",
    "ServerError",
    "Storage",
    "StorageError",
    "StoredClip",
    "SubmissionUncertainError",
    "Task",
    "TaskError",
    "TaskFailedError",
    "TaskStatus",
    "Usage",
    "ValidationError",
    "WaitTimeoutError",
    "__version__",
    "batch_outcomes",
    "batch_status",
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _imports(module: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(imported module, names imported from it, line) for every import of ours."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module, path).split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "omni_edit" or target.startswith("omni_edit."):
                names = [alias.name for alias in node.names]
                # `from . import x` imports the module x.
                submodules = [f"{target}.{n}" for n in names if _exists(f"{target}.{n}")]
                if submodules:
                    for sub in submodules:
                        yield sub, [], node.lineno
                else:
                    yield target, names, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("omni_edit"):
                    yield alias.name, [], node.lineno


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    root = PACKAGE.parent
    return (root / rel).with_suffix(".py").exists() or (root / rel / "__init__.py").exists()


def _layer(module: str) -> int:
    best, rank = -1, -1
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{module} belongs to no layer: add it to LAYERS"
    return rank


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in _modules():
        graph[module] = {target for target, _, _ in _imports(module, path) if target != module}
    return graph


def test_every_module_belongs_to_a_layer() -> None:
    for module, _ in _modules():
        _layer(module)


def test_imports_flow_one_way() -> None:
    upward = [
        f"{module}:{line} imports {target}"
        for module, path in _modules()
        for target, _, line in _imports(module, path)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # A package's __init__ importing its own modules is how a package is made, not a cycle
    # between concerns; anything else is.
    real = [c for c in cycles if not all(c[0].startswith(m) or m.startswith(c[0]) for m in c)]
    assert real == []


def _private_names_defined(path: Path) -> set[str]:
    """Private names a module defines: functions, classes, module globals, and the
    attributes its classes set (``self._x``) or declare (``__slots__``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_module_uses_another_modules_private_names() -> None:
    misuse = []
    for module, path in _modules():
        own = _private_names_defined(path)
        tree = ast.parse(path.read_text())
        for target, names, line in _imports(module, path):
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    misuse.append(f"{module}:{line} imports {target}.{name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in own
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                misuse.append(f"{module}:{node.lineno} uses .{node.attr}")
    assert misuse == []


def test_the_public_surface_is_exactly_the_documented_names() -> None:
    assert set(omni_edit.__all__) == PUBLIC
    assert len(omni_edit.__all__) == len(PUBLIC)  # no name listed twice
    for name in PUBLIC:
        assert hasattr(omni_edit, name), name


def test_public_classes_say_what_they_are() -> None:
    for name in PUBLIC - {"__version__", "EditInput"}:
        assert getattr(omni_edit, name).__doc__, f"{name} has no docstring"
