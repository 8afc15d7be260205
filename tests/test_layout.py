"""The package's shape: no import cycles between kit modules, every module in the README's layout,
and registries that name what can be chosen in params."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "kit"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Kit modules imported at module level (function-level imports are deferred on purpose)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules}
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in KIT.rglob("*.py")}
    return {name: _top_level_imports(path, name, set(files)) for name, path in files.items()}


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## Params profiles")]
    missing = [p.relative_to(KIT).as_posix() for p in sorted(KIT.rglob("*.py"))
               if p.name not in ("__init__.py", "__main__.py") and p.name not in layout]
    assert not missing, f"README's layout section does not mention {missing}"


def test_registries_validate_params_names():
    from kit.config import ParamsError, validate

    for values, key in [({"model": {"backend": "llamacpp"}}, "model.backend"),
                        ({"negotiation": {"methods": ["ncn", "parley"]}}, "negotiation.methods"),
                        ({"negotiation": {"value_judge": "oracle"}}, "negotiation.value_judge"),
                        ({"finetune": {"methods": ["ppo"]}}, "finetune.methods")]:
        with pytest.raises(ParamsError, match=key) as err:
            validate({"profile": "t", **values})
        assert "registered:" in str(err.value)


def test_registry_loads_lazily_and_suggests():
    from kit.registry import Registry

    r = Registry("thing")
    r.register("json_dumps", "json:dumps")
    assert "json_dumps" in r and r.names() == ["json_dumps"]
    import json

    assert r.get("json_dumps") is json.dumps
    with pytest.raises(ValueError, match="did you mean 'json_dumps'"):
        r.get("json_dump")
    with pytest.raises(ValueError, match="registered twice"):
        r.register("json_dumps", len)
