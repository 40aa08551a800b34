"""The package's import layering, read from the source (every import, also the lazy ones inside functions).

Rooms in order (the README's code layout): a room may import rooms of its own level or before, never after.
The checks the seams need most are stated one by one below as well, so a failure says which.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "medreg"

LEVELS = [
    {"errors", "memory", "__init__"},  # leaf modules every room may use
    {"spatial", "geometry"},
    {"losses", "metrics", "networks"},
    {"registration"},
    {"io", "transforms", "datasets", "config", "presets"},
    {"inference", "baselines", "training", "train", "evaluation", "evaluate", "report"},
    {"cli", "__main__"},
]
LEVEL = {room: i for i, rooms in enumerate(LEVELS) for room in rooms}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        out[".".join(rel.parts).removesuffix(".__init__")] = path
    return out


def _imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """``(imported medreg module, line, at top level)`` for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: expected absolute imports (medreg.room...), found a relative one"
            names = [node.module or ""]
        found += [(n, node.lineno, id(node) in top) for n in names if n == "medreg" or n.startswith("medreg.")]
    return found


ALL = {m: _imports(p, m) for m, p in _modules().items()}


def _violations(rule) -> list[str]:
    return [f"{m}:{line} imports {target}" for m, imports in sorted(ALL.items())
            for target, line, top in imports if rule(m, target, top)]


def test_rooms_are_known():
    rooms = {_room(m) for m in ALL}
    assert rooms <= set(LEVEL), f"rooms without a level: {sorted(rooms - set(LEVEL))}"


def test_a_room_imports_only_rooms_at_or_before_its_level():
    bad = _violations(lambda m, t, top: t != "medreg" and LEVEL[_room(t)] > LEVEL[_room(m)])
    assert not bad, "\n".join(bad)


def test_spatial_imports_no_other_medreg_room():
    bad = _violations(lambda m, t, top: _room(m) == "spatial" and _room(t) not in ("spatial", "errors"))
    assert not bad, "\n".join(bad)


def test_geometry_imports_only_spatial():
    bad = _violations(lambda m, t, top: _room(m) == "geometry" and _room(t) not in ("geometry", "spatial", "errors"))
    assert not bad, "\n".join(bad)


def test_inference_imports_no_training():
    bad = _violations(lambda m, t, top: _room(m) == "inference" and _room(t) in ("train", "training"))
    assert not bad, "\n".join(bad)


def test_io_builds_no_models():
    bad = _violations(lambda m, t, top: _room(m) == "io" and _room(t) in ("networks", "registration", "config"))
    assert not bad, "\n".join(bad)


def test_cli_only_parses_and_calls():
    """cli modules import no library code at import time (``medreg --help`` stays instant) and define no classes."""
    allowed_top = {"cli", "errors", "datasets.names"}
    bad = [f"{m}:{line} imports {t} at import time" for m, imports in sorted(ALL.items()) if _room(m) == "cli"
           for t, line, top in imports if top and ".".join(t.split(".")[1:3]) not in allowed_top and _room(t) not in allowed_top]
    for m, path in _modules().items():
        if _room(m) != "cli":
            continue
        tree = ast.parse(path.read_text())
        bad += [f"{m}:{n.lineno} defines class {n.name}" for n in tree.body if isinstance(n, ast.ClassDef)]
        bad += [f"{m}:{n.lineno} imports {a.name} at import time" for n in tree.body if isinstance(n, ast.Import)
                for a in n.names if a.name.split(".")[0] in ("torch", "numpy", "monai", "nibabel", "SimpleITK", "ants")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("rule", ["spatial", "inference"])
def test_the_checks_can_fail(rule, tmp_path):
    """The scanner sees a lazy import inside a function (what a violation would look like)."""
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from medreg.training.data import LoadPaird\n")
    assert _imports(src, f"medreg.{rule}.x") == [("medreg.training.data", 2, False)]
