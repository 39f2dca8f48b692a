"""The package's rooms (docs/architecture.md) use each other through public names only: no module
imports another room's underscored name. A room is a subpackage of nsm (gram, match, measures,
results, plot, torch) or a top-level module; the internals nsm/_*.py are shared by all."""

from __future__ import annotations

import ast
import pathlib

import nsm

PACKAGE = pathlib.Path(nsm.__file__).parent


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "nsm"


def is_module(dotted: str) -> bool:
    path = PACKAGE.parent / dotted.replace(".", "/")
    return path.with_suffix(".py").exists() or path.is_dir()


def test_no_room_imports_another_rooms_private_names():
    offenders = []
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if f.name == "__init__.py" else parts)
        package = module.split(".") if f.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = package[: len(package) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                name = alias.name
                if not name.startswith("_") or name.startswith("__") or is_module(f"{target}.{name}"):
                    continue
                if room(target) != room(module):
                    offenders.append(f"{module}:{node.lineno} imports {target}.{name}")
    assert offenders == []


def test_the_public_names_are_all_dir_shows():
    assert set(dir(nsm)) == set(nsm.__all__) | {"plot", "torch"}
    assert not [n for n in dir(nsm) if n.startswith("_") and n != "__version__"]
