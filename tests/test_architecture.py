"""The package's architecture, checked from its source: the import graph of swapkern/ (every module parsed with ast,
relative imports resolved, imports inside functions included) has no cycle; the specification (reference.py) stands
on the low modules only; nothing outside the seam (_backend.py) reads the seam's private names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "swapkern"

# What the specification may import from swapkern: the rules, the draws and the helpers every backend shares.
REFERENCE_ALLOWED = {
    "swapkern._checks",  # the argument checks (shared with the Triton backend)
    "swapkern._codes",  # the rule table: each rule's key and exception type
    "swapkern._common",  # bits, tensor_arg, mutating, plan layout and views, fingerprints
    "swapkern._index",  # index argument conversion
    "swapkern._wrappers",  # swap_channels_ / swap_rows_ / swap_cols_ over any swap_
    "swapkern.draws",  # the counter-based generator of every draw
    "swapkern._groups",  # what a weight-swap group is, and its draw
    "swapkern._loadchecks",  # the fused loader's checks
}

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(name: str, path: Path, node, known) -> set[str]:
    """The swapkern modules one import statement names (a `from x import y` names x, and x.y when y is a module)."""
    found = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                found.add(alias.name)
        return found
    if node.level:
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if not base.startswith("swapkern"):
        return found
    for alias in node.names:
        if f"{base}.{alias.name}" in known:
            found.add(f"{base}.{alias.name}")
        elif base in known:  # a name defined in the module `base` (not a submodule of it)
            found.add(base)
    return found


def import_graph() -> dict[str, dict[str, list[int]]]:
    """module -> {imported swapkern module: [lines]}, every import statement of the module, at any depth. A module
    does not import its own package's __init__ by this graph: the package is being imported when it runs."""
    known = modules()
    graph = {}
    for name, path in known.items():
        edges: dict[str, list[int]] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(name, path, node, known):
                    if target != name:
                        edges.setdefault(target, []).append(node.lineno)
        graph[name] = edges
    return graph


def cycles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_relative_and_function_local_imports():
    graph = import_graph()
    assert "swapkern._checks" in graph["swapkern.triton.ops"]  # from .._checks import ...
    assert "swapkern.triton.kernels" in graph["swapkern.triton.ops"]  # from . import kernels
    assert "swapkern.data" in graph["swapkern.integrations._common"]  # inside a function
    assert "swapkern._neuron" in graph["swapkern._weightprotocols"]


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, f"import cycles in swapkern/: {found}"


def test_the_specification_imports_only_low_modules():
    imported = set(import_graph()["swapkern.reference"])
    assert imported <= REFERENCE_ALLOWED, f"reference.py imports {sorted(imported - REFERENCE_ALLOWED)}"


def test_the_low_modules_import_no_backend_no_api_and_no_engine():
    graph = import_graph()
    for low in REFERENCE_ALLOWED:
        assert set(graph[low]) <= REFERENCE_ALLOWED, f"{low} imports {sorted(set(graph[low]) - REFERENCE_ALLOWED)}"


PRIVATE_READ = re.compile(r"\b_backend\._[A-Za-z]|\bb\._(C|native_error)\b")  # b: gpu_check.sh's alias


def test_nothing_outside_the_seam_reads_its_private_names():
    """Callers above the seam (the package, the benchmarks) use its public functions only."""
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "_backend.py"]
    files += sorted(p for p in (ROOT / "bench").rglob("*") if p.suffix in (".py", ".sh"))
    reads = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in files
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if PRIVATE_READ.search(line)
    ]
    assert not reads, "private reads of swapkern._backend:\n" + "\n".join(reads)


def test_no_caller_above_the_seam_resolves_a_backend_itself():
    """data, loader, optim, multi and the benchmarks ask the seam's public function for a tensor's implementation
    (impl); the choosing (resolve, module) stays inside the seam."""
    above = [PACKAGE / f for f in ("data.py", "_featureplan.py", "_images.py", "loader.py", "optim.py", "multi.py")]
    above += [PACKAGE / "_sharded.py"] + sorted((ROOT / "bench").rglob("*.py"))
    calls = re.compile(r"\b_backend\.(resolve|module)\(")
    found = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in above
        if p.exists()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if calls.search(line)
    ]
    assert not found, f"backend resolved outside the seam: {found}"


def test_small_units():
    """No module of swapkern/ over 400 lines, WeightSwap under 230 (the house style: a file that grows two jobs
    becomes two files)."""
    long = {name: n for name, p in modules().items() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"
    tree = ast.parse((PACKAGE / "optim.py").read_text())
    ws = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "WeightSwap")
    assert ws.end_lineno - ws.lineno + 1 < 230
