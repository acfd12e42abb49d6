"""The package's layers (docs/architecture.md): a module imports its own component and the
components below it, never one beside or above it. Read from the source, every import
(inside functions and ``TYPE_CHECKING`` blocks too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "thinnest"

#: Each component's layer, lowest first. A component may import those of lower layers.
LAYERS: dict[str, int] = {
    # settings, errors, logging, test fakes: everything may use them
    "__init__": 0,  # the version
    "config": 0,
    "errors": 0,
    "log": 0,
    "metrics": 0,  # the Prometheus metrics every process counts in
    "testing": 0,
    # the shared contracts: agent config, dispatch metadata, events, session status
    "contracts": 1,
    # the adapters: database, LiveKit's API, model providers, the API's HTTP client
    "store": 2,
    "livekit": 2,
    "providers": 2,
    "client": 2,
    # what routes, CLI, demo and bench share; the dev stack's first owner, key and agent
    "services": 3,
    "bootstrap": 3,
    # the components that serve calls, and the processes of a dev stack
    "api": 4,
    "gateway": 4,
    "engine": 4,
    "devstack": 4,
    "calls": 4,
    "modelsvc": 4,
    "cluster": 4,
    # the bench drives the components (the engine in-process too)
    "bench": 5,
    # the command line starts everything
    "cli": 6,
    "__main__": 7,
}

#: The one import across a layer, and why.
EXCEPTIONS = {
    ("api", "gateway"): "the API's server (api/main.py) mounts the gateway's WebSocket route: "
    "`thinnest serve` is both",
    ("modelsvc", "api"): "the model service answers errors in the API's one format (api/errors.py)",
}


def _component(module: str) -> str:
    """``thinnest.api.routes.voice`` → ``api``; ``thinnest.config`` → ``config``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    """Every ``thinnest`` module the file imports (``from thinnest import x`` names x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("thinnest.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "thinnest":  # a module of the package, or a name of its __init__
                found |= {
                    f"thinnest.{a.name}" if _is_module(a.name) else "thinnest.__init__"
                    for a in node.names
                }
            elif node.module.startswith("thinnest."):
                found.add(node.module)
    return found


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name).is_dir()


def _modules() -> list[tuple[str, Path]]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        modules.append((".".join(rel.parts), path))
    return modules


def test_every_component_has_a_layer() -> None:
    components = {_component(name) for name, _ in _modules()}
    assert components <= set(LAYERS), f"give these a layer: {sorted(components - set(LAYERS))}"


def test_the_layer_rule_reads_an_import_of_a_component_beside_it_as_a_violation() -> None:
    # The check itself must be able to fail: the engine importing the API is sideways.
    assert not _allowed("engine", "api")
    assert not _allowed("store", "livekit")
    assert not _allowed("contracts", "store")
    assert _allowed("api", "services") and _allowed("engine", "contracts")


def _allowed(importer: str, imported: str) -> bool:
    if importer == imported or (importer, imported) in EXCEPTIONS:
        return True
    if LAYERS[importer] == LAYERS[imported] == 0:
        return True  # settings, errors and logging use one another
    return LAYERS[imported] < LAYERS[importer]


@pytest.mark.parametrize("name,path", _modules(), ids=[name for name, _ in _modules()])
def test_imports_go_only_down_the_layers(name: str, path: Path) -> None:
    mine = _component(name)
    wrong = sorted(target for target in _imports(path) if not _allowed(mine, _component(target)))
    assert not wrong, (
        f"{name} ({mine}, layer {LAYERS[mine]}) imports {wrong}: move what both need into "
        "thinnest.contracts or thinnest.services (see docs/architecture.md, Layers)"
    )
