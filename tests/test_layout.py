"""The package's shape: imports that point one way, a top level of a few modules and named packages,
every module in the docs' layout, and registries that name what can be chosen in params."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "kit"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:``: annotations, never executed."""
    return {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for n in ast.walk(stmt)
    }


def _in_functions(tree: ast.AST) -> set[int]:
    """Nodes inside a function body: they run when the function is called, not when the module loads."""
    return {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for stmt in (node.body if isinstance(node.body, list) else [node.body])
        for n in ast.walk(stmt)
    }


def _imports(path: Path, name: str, modules: set[str], module_level: bool = False) -> set[str]:
    """Kit modules an import in ``path`` executes, at module level or inside a function (a deferred
    import still points one way; ``module_level`` keeps only the imports that run when the module loads).
    Importing ``a.b.c`` runs ``a`` and ``a.b`` first, so those count too — except the packages ``name``
    itself sits in."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree) | (_in_functions(tree) if module_level else set())
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            found |= {m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in modules}
    return {m for m in found if not f"{name}.".startswith(f"{m}.")}


def import_graph(module_level: bool = False) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in KIT.rglob("*.py")}
    return {name: _imports(path, name, set(files), module_level) for name, path in files.items()}


def package_of(module: str) -> str:
    """``kit.negotiation.trace`` -> ``kit.negotiation``; a top-level module (``kit.config``) is its own floor."""
    return ".".join(module.split(".")[:2])


def package_graph(module_level: bool = False) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph(module_level).items():
        graph.setdefault(package_of(module), set()).update(package_of(t) for t in targets)
    return {p: targets - {p, "kit"} for p, targets in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_import_graph_sees_deferred_and_package_imports(tmp_path):
    """The cycle check below can fail: a deferred import and a parent package's import both count."""
    pkg = tmp_path / "kit"
    (pkg / "p").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "p" / "__init__.py").write_text("from kit.p.a import A\n")
    (pkg / "p" / "a.py").write_text(
        "from kit.p.b import B\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from kit.q import Q\n"
    )
    (pkg / "p" / "b.py").write_text("def f():\n    from kit.q import Q\n")
    (pkg / "q.py").write_text("from kit.p.b import B\n")
    modules = {"kit", "kit.p", "kit.p.a", "kit.p.b", "kit.q"}
    assert _imports(pkg / "p" / "a.py", "kit.p.a", modules) == {
        "kit.p.b"
    }  # not its own package, not TYPE_CHECKING
    assert _imports(pkg / "p" / "b.py", "kit.p.b", modules) == {"kit.q"}  # deferred
    assert _imports(pkg / "q.py", "kit.q", modules) == {"kit.p", "kit.p.b"}  # runs kit/p/__init__ first


# The floors (docs/layout.md says the same): a package imports only its own floor or the ones below.
# ground: the run machinery, the name registries, models, the engine, data, pure metrics, embeddings.
GROUND = ("kit.run", "kit.registry", "kit.llm", "kit.engine", "kit.data", "kit.metrics", "kit.embed")
# method packages and the top floor: what a lesson runs, reports and the commands.
METHOD = (
    "kit.negotiation",
    "kit.palette",
    "kit.visa",
    "kit.selfplay",
    "kit.lessons",
    "kit.reporting",
    "kit.tools",
    "kit.session",
    "kit.runner",
    "kit.bench",
)
# Between them (may import the ground, are imported by the methods): kit.config, kit.values, kit.agents,
# kit.evals, kit.train, kit.plan.
MIDDLE = ("kit.config", "kit.values", "kit.agents", "kit.evals", "kit.train", "kit.plan")
# Imports from the ground upward that are right, each with its reason (module -> package).
GROUND_EXCEPTIONS = {
    # vLLM's engine settings read the memory plan's model shapes (kit.plan.catalog, kit.plan.memory: pure
    # arithmetic on a model config); the plan's package imports kit.config, never a method package
    ("kit.llm.vllm_backend", "kit.plan"),
    # the consensus metrics name the ten Schwartz values (kit.values.schwartz: a constant table)
    ("kit.metrics.consensus", "kit.values"),
}

# Module-level imports from the middle floor into a method package that are right (module -> package): none
# (the trace readers take protocol names and stopping rules from kit.registry, not from kit.negotiation).
MIDDLE_EXCEPTIONS: set[tuple[str, str]] = set()


def test_import_graph_has_no_cycle_between_packages():
    """Module-level imports between kit packages form no cycle (a cycle fails on import order)."""
    cycle = _cycle(package_graph(module_level=True))
    assert cycle is None, f"import cycle between kit packages: {' -> '.join(cycle)}"


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_floors_cover_every_package():
    packages = {package_of(m) for m in import_graph()} - {"kit", "kit.__main__"}
    assert packages == set(GROUND) | set(METHOD) | set(MIDDLE), (
        "name each kit package on a floor in this test"
    )


def test_ground_floor_imports_no_method_package():
    """The ground floor (module-level and deferred imports alike) never reaches a method package or the
    floor between (but for the exceptions listed above)."""
    above = METHOD + MIDDLE
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if package_of(module) in GROUND
        for target in targets
        if package_of(target) in above and (module, package_of(target)) not in GROUND_EXCEPTIONS
    )
    assert not wrong, f"the ground floor imports upward: {wrong}"
    for module, package in GROUND_EXCEPTIONS:  # an exception that no longer happens is dropped from the list
        assert package in {package_of(t) for t in import_graph()[module]}, (
            f"{module} no longer imports {package}"
        )


def test_middle_floor_imports_no_method_package():
    """kit.config, the judges, the agents, the evaluations, the trainers and the plan import no method
    package at module level (kit.config composes the methods' params sections: the test below)."""
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph(module_level=True).items()
        if package_of(module) in MIDDLE
        for target in targets
        if package_of(target) in METHOD
        and (module, package_of(target)) not in MIDDLE_EXCEPTIONS
        and not (module == "kit.config" and (target.endswith(".params") or target in METHOD))
    )
    assert not wrong, f"the middle floor imports a method package: {wrong}"


def test_config_composes_the_packages_sections():
    """kit.config reaches a package above the ground only for that package's own params section
    (``kit.<package>.params``, imported at module level, trl-style), never lazily inside a validator; each such
    params module imports no method package's program, and the package's ``__init__`` runs no kit import, so
    loading the params loads no method."""
    everything, top = import_graph(), import_graph(module_level=True)
    above = {"kit.train", "kit.evals"} | set(METHOD)
    reached = {t for t in everything["kit.config"] if package_of(t) in above}
    params = {t for t in reached if t.endswith(".params")}
    assert params, "kit.config composes no package's section"
    extra = reached - params - {package_of(t) for t in params}
    assert not extra, f"kit.config reaches {sorted(extra)} besides the packages' params sections"
    assert params <= top["kit.config"], "kit.config imports a section inside a function"
    for module in params:
        wrong = sorted(
            t
            for t in top[module]
            if package_of(t) in METHOD and t != package_of(t) and not t.endswith(".params")
        )
        assert not wrong, f"{module} imports a method's modules: {wrong}"
        init = package_of(module)
        assert not top[init], (
            f"{init}/__init__.py imports {sorted(top[init])} when kit.config loads its section"
        )


def test_top_level_shows_the_house():
    """kit/ holds a handful of modules; the rest sits in packages whose docstring says what they are."""
    modules = sorted(p.name for p in KIT.glob("*.py"))
    assert len(modules) <= 8, f"kit/ has {len(modules)} top-level modules: {modules}"
    for package in sorted(p.parent for p in KIT.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"kit/{package.name}/__init__.py has no docstring saying what the package is"


def test_docs_layout_names_every_module():
    layout = (ROOT / "docs" / "layout.md").read_text()
    missing = [
        p.relative_to(KIT).as_posix()
        for p in sorted(KIT.rglob("*.py"))
        if p.name not in ("__init__.py", "__main__.py") and p.name not in layout
    ]
    assert not missing, f"docs/layout.md does not mention {missing}"


# ---------------------------------------------------------------------------------------------
# the documentation: README as the front door, the rest in docs/

DOCS = ROOT / "docs"
RESULTS = DOCS / "results.md"  # generated by python -m kit docs-results; may be absent before a run
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def docs_pages() -> list[Path]:
    """Every page under docs/ (results.md included where it has been generated)."""
    return sorted(DOCS.rglob("*.md"))


def _links(path: Path, text: str | None = None) -> list[str]:
    """Relative link targets in a markdown text, code blocks left out, each resolved against ``path``'s folder."""
    text = _FENCE.sub("", path.read_text() if text is None else text)
    return [t for t in _LINK.findall(text) if not re.match(r"^[a-z]+:", t) and not t.startswith("#")]


def _target(path: Path, link: str) -> Path:
    return (path.parent / link.split("#")[0]).resolve()


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a markdown page."""
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", _FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def _yaml_keys(value) -> set[str]:
    if isinstance(value, dict):
        return {str(k) for k in value} | {k for v in value.values() for k in _yaml_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _yaml_keys(v)}
    return set()


def test_readme_is_the_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200, (
        "README.md is the front door: at most 200 lines; move the rest to docs/"
    )
    assert "issue" not in readme.lower() and "session" not in readme.lower()
    for command in (
        "make run",
        "make test",
        "make lab",
        "make test-fast",
        "make test-gpu-stack",
        "make test-vllm",
        "make bench",
        "make chromium",
        "python -m kit doctor",
        "python -m kit report",
        "python -m kit docs-results runs/smoke",
    ):
        assert command in readme, f"README.md does not show {command!r}"


def test_every_docs_page_is_linked_from_readme_and_index():
    pages = docs_pages() + ([] if RESULTS.exists() else [RESULTS])
    readme, index = ROOT / "README.md", DOCS / "index.md"
    for source in (readme, index):
        linked = {_target(source, link) for link in _links(source)}
        missing = [p.relative_to(ROOT).as_posix() for p in pages if p.resolve() not in linked and p != source]
        assert not missing, f"{source.relative_to(ROOT)} does not link {missing}"


def test_relative_links_in_the_docs_resolve():
    """Every relative link of README.md and docs/ points at a file that exists, and an anchor at a heading."""
    broken = []
    for source in [ROOT / "README.md"] + docs_pages():
        for link in _links(source):
            target = _target(source, link)
            if target == RESULTS.resolve() and not RESULTS.exists():
                continue  # written by python -m kit docs-results after make run
            anchor = link.partition("#")[2]
            if not target.exists() or (anchor and target.suffix == ".md" and anchor not in _anchors(target)):
                broken.append(f"{source.relative_to(ROOT)}: {link}")
    assert not broken, broken


def test_every_params_key_is_named_in_the_docs():
    """Each key of every profile, at every depth, appears in docs/*.md or docs/units/*.md."""
    import yaml

    text = "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")) + sorted((DOCS / "units").glob("*.md")))
    keys = set().union(
        *(
            _yaml_keys(yaml.safe_load((ROOT / "params" / f"{name}.yaml").read_text()))
            for name in ("tiny", "smoke", "full")
        )
    )
    missing = sorted(k for k in keys if not re.search(rf"(?<![\w-]){re.escape(k)}(?![\w-])", text))
    assert not missing, f"params keys no docs page names: {missing}"


def test_every_notebook_links_its_unit_page():
    import nbformat

    units = {p.stem[:2]: p for p in (DOCS / "units").glob("*.md")}
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        intro = next(c for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "markdown")
        targets = [_target(nb_path, link) for link in _links(nb_path, intro.source)]
        unit = units.get(f"{nb_path.name[0]}x")
        assert unit and unit.resolve() in targets, f"{nb_path.name}: its first cell does not link {unit}"
        assert all(t.exists() for t in targets), f"{nb_path.name}: a link in its first cell points nowhere"


def test_registries_validate_params_names():
    from kit.config import ParamsError, validate

    for values, key in [
        ({"model": {"backend": "llamacpp"}}, "model.backend"),
        ({"negotiation": {"methods": ["ncn", "parley"]}}, "negotiation.methods"),
        ({"negotiation": {"value_judge": "oracle"}}, "negotiation.value_judge"),
        ({"finetune": {"methods": ["ppo"]}}, "finetune.methods"),
    ]:
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
