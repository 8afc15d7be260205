"""The package's shape: imports that point one way, a top level of a few modules and named packages,
every module in the docs' layout, and registries that name what can be chosen in params."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "kit"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:``: annotations, never executed."""
    return {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for stmt in node.body for n in ast.walk(stmt)}


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Kit modules an import in ``path`` executes, at module level or inside a function (a deferred
    import still points one way). Importing ``a.b.c`` runs ``a`` and ``a.b`` first, so those count
    too — except the packages ``name`` itself sits in."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            found |= {m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in modules}
    return {m for m in found if not f"{name}.".startswith(f"{m}.")}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in KIT.rglob("*.py")}
    return {name: _imports(path, name, set(files)) for name, path in files.items()}


def test_import_graph_sees_deferred_and_package_imports(tmp_path):
    """The cycle check below can fail: a deferred import and a parent package's import both count."""
    pkg = tmp_path / "kit"
    (pkg / "p").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "p" / "__init__.py").write_text("from kit.p.a import A\n")
    (pkg / "p" / "a.py").write_text("from kit.p.b import B\nfrom typing import TYPE_CHECKING\n"
                                    "if TYPE_CHECKING:\n    from kit.q import Q\n")
    (pkg / "p" / "b.py").write_text("def f():\n    from kit.q import Q\n")
    (pkg / "q.py").write_text("from kit.p.b import B\n")
    modules = {"kit", "kit.p", "kit.p.a", "kit.p.b", "kit.q"}
    assert _imports(pkg / "p" / "a.py", "kit.p.a", modules) == {"kit.p.b"}  # not its own package, not TYPE_CHECKING
    assert _imports(pkg / "p" / "b.py", "kit.p.b", modules) == {"kit.q"}  # deferred
    assert _imports(pkg / "q.py", "kit.q", modules) == {"kit.p", "kit.p.b"}  # runs kit/p/__init__ first


def test_top_level_shows_the_house():
    """kit/ holds a handful of modules; the rest sits in packages whose docstring says what they are."""
    modules = sorted(p.name for p in KIT.glob("*.py"))
    assert len(modules) <= 8, f"kit/ has {len(modules)} top-level modules: {modules}"
    for package in sorted(p.parent for p in KIT.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"kit/{package.name}/__init__.py has no docstring saying what the package is"


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
