"""The package's import graph, read from the source with ast (every import, at module level or inside
a function): no cycle, and the layers import only downwards."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "zeroskip"


def _modules() -> dict:
    """{module name: path} of every .py file under src/zeroskip."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict) -> set:
    """The zeroskip modules `name` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in modules and t != name)
    if name == "zeroskip.kernels":  # the registry imports its family modules by name
        registry = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign)
                        and any(getattr(t, "id", None) == "FAMILIES" for t in n.targets))
        out.update(f"zeroskip.kernels.{v}" for v in ast.literal_eval(registry.value).values())
    return out


def graph() -> dict:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(edges: dict):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_is_read():
    edges = graph()
    assert "zeroskip.kernels.direct" in edges["zeroskip.kernels"]          # the registry's entries
    assert "zeroskip.runtime" in edges["zeroskip.kernels.winograd_steps"]   # a relative import
    assert "zeroskip.measure" in edges["zeroskip.convert"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle():
    assert _cycle(graph()) is None


def test_layers_import_only_downwards():
    edges = graph()
    assert edges["zeroskip.runtime"] == set() and edges["zeroskip.accuracy"] == set()
    for name, targets in edges.items():
        if name.startswith("zeroskip.kernels"):
            above = {t for t in targets if not t.startswith("zeroskip.kernels")} - {"zeroskip.runtime",
                                                                                     "zeroskip.geometry"}
            assert not above, f"{name} imports {above}"
    for low in ("zeroskip.plan", "zeroskip.rules", "zeroskip.dispatch"):
        assert not {t for t in edges[low] if t.startswith(("zeroskip.bench", "zeroskip.measure",
                                                            "zeroskip.functional", "zeroskip.library"))}
