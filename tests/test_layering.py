"""The packages are layered as the data flows, checked from the sources (every import, also those
inside functions):

    nn                           the maths (imports only nn, NumPy, optionally CuPy, and the standard library)
    common, svhn, procedural     shared file/CLI helpers; the real data; the procedural synthesizer
    gan                          the generators (DCGAN per digit, SimGAN)
    classify                     the ConvNet, and the evaluations that need a generator and a classifier
    experiment, bench            the whole pipeline; the timings

A package imports only packages of its own level or below (and the package graph has no cycle),
no module takes part in an import cycle, and no package imports another package's underscored names.
"""
import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEVELS = {"nn": 0, "common": 1, "svhn": 1, "procedural": 1, "gan": 2, "classify": 3, "experiment": 4, "bench": 4}
NN_MAY_IMPORT = {"nn", "numpy", "cupy"}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources():
    files = {}
    for package in LEVELS:
        for path in sorted((ROOT / package).rglob("*.py")):
            files[module_name(path)] = path
    return files


MODULES = sources()


def imports(name, path):
    """[(line, imported module, imported names)] of every import in the file, resolved to modules
    (`from gan import runs` is the module gan.runs when that is a module)."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    out.append((node.lineno, sub, ()))
                else:
                    out.append((node.lineno, target, (alias.name,)))
    return out


EDGES = {name: imports(name, path) for name, path in MODULES.items()}


def package(module):
    return module.split(".")[0]


def test_the_sources_were_found():
    assert {package(m) for m in MODULES} == set(LEVELS)
    assert len(MODULES) > 40


def test_nn_imports_only_nn_numpy_cupy_and_the_standard_library():
    bad = [f"{m}:{line} imports {target}" for m, edges in EDGES.items() if package(m) == "nn"
           for line, target, _ in edges
           if package(target) not in NN_MAY_IMPORT and package(target) not in sys.stdlib_module_names]
    assert not bad, "\n".join(bad)


def test_no_package_imports_a_package_above_it():
    bad = [f"{m}:{line} imports {target} ({package(m)} is level {LEVELS[package(m)]}, "
           f"{package(target)} level {LEVELS[package(target)]})"
           for m, edges in EDGES.items() for line, target, _ in edges
           if package(target) in LEVELS and LEVELS[package(target)] > LEVELS[package(m)]]
    assert not bad, "\n".join(bad)


def find_cycle(graph):
    """One cycle of the directed graph {node: set of nodes} as a list of nodes, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_the_packages_import_each_other_without_a_cycle():
    graph = {}
    for m, edges in EDGES.items():
        for _, target, _ in edges:
            if package(target) in LEVELS and package(target) != package(m):
                graph.setdefault(package(m), set()).add(package(target))
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_module_takes_part_in_an_import_cycle():
    graph = {m: {target for _, target, _ in edges if target in MODULES and target != m} for m, edges in EDGES.items()}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_no_package_imports_another_packages_underscored_names():
    def private(word):
        return word.startswith("_") and not word.startswith("__")
    bad = [f"{m}:{line} imports {target} {names}" for m, edges in EDGES.items() for line, target, names in edges
           if package(target) in LEVELS and package(target) != package(m)
           and (any(private(part) for part in target.split(".")) or any(private(n) for n in names))]
    assert not bad, "\n".join(bad)


def module_aliases(name, path):
    """{local name: project module} for the names an import binds to a module of another package
    (`from nn import parallel` binds parallel; `import nn.parallel` binds nn; `import nn.parallel as p` p)."""
    tree = ast.parse(path.read_text(), str(path))
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name if alias.asname else alias.name.split(".")[0]
                aliases[alias.asname or target] = target
        elif isinstance(node, ast.ImportFrom):
            for line, target, names in imports(name, path):
                if line == node.lineno and not names:
                    local = next((a.asname or a.name for a in node.names if f"{target}".endswith("." + a.name)), None)
                    if local:
                        aliases[local] = target
    return {local: target for local, target in aliases.items()
            if package(target) in LEVELS and package(target) != package(name)}


def private_attribute_uses(name, path):
    """["module:line uses target.attr.chain"] for attribute chains on another package's module that
    contain a private (single leading underscore, not dunder) name."""
    aliases = module_aliases(name, path)
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        chain, base = [], node
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if isinstance(base, ast.Name) and base.id in aliases:
            private = [a for a in chain if a.startswith("_") and not a.startswith("__")]
            if private:
                bad.append(f"{name}:{node.lineno} uses {base.id}.{'.'.join(chain)} ({aliases[base.id]})")
    return sorted(set(bad))


def test_no_package_reads_another_packages_private_attributes():
    bad = [line for m, path in MODULES.items() for line in private_attribute_uses(m, path)]
    assert not bad, "\n".join(bad)


def test_the_private_attribute_check_finds_what_it_should(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("import nn.parallel\nimport nn.backend as b\nfrom nn import parallel\nfrom nn import Sequential\n"
                      "import os\n\n"
                      "a = parallel._threads\nc = nn.parallel._x\nd = b._cupy\n"
                      "e = parallel.__doc__\nf = parallel.get_threads()\ng = os._exit\nh = Sequential._private\n")
    found = private_attribute_uses("bench.probe", source)
    assert [line.split(" uses ")[1].split(" ")[0] for line in found] == ["parallel._threads", "nn.parallel._x", "b._cupy"]
    assert private_attribute_uses("nn.probe", source) == []          # within its own package it may


# Imports belong at the top of a module; inside a function only the optional or heavy packages that a
# command should not load for --help or on a machine without them, and these explained exceptions.
LAZY_PACKAGES = {"matplotlib", "PIL", "scipy", "cupy", "cupyx", "torch", "ctypes"}
LAZY_EXCEPTIONS = {
    ("common.cli", "nn.parallel"): "common must not depend on nn at import (svhn and procedural use common)",
    ("common.cli", "nn.backend"): "common must not depend on nn at import (svhn and procedural use common)",
    ("procedural.fonts", "pymupdf_fonts"): "an optional font package, loaded only when its fonts are drawn",
    ("bench.bench_winograd", "numpy"): "--blas-threads sets the BLAS thread variables before NumPy loads",
    ("bench.bench_winograd", "nn.backend"): "loads NumPy; after --blas-threads is in force",
    ("bench.bench_winograd", "nn.layers"): "loads NumPy; after --blas-threads is in force",
    ("bench.bench_winograd", "nn.layers.winograd_fast"): "loads NumPy; after --blas-threads is in force",
    ("bench.bench_winograd", "common.cli"): "imported with nn, after the script puts the project on sys.path",
}


def imports_inside_functions(name, path):
    """[(line, module)] of the imports inside functions of the file (resolved as in `imports`)."""
    inner = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner |= {n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return [(line, target) for line, target, _ in imports(name, path) if line in inner]


def test_imports_inside_functions_are_only_the_lazy_optional_ones():
    bad = [f"{m}:{line} imports {target} inside a function; move it to the top of the module"
           for m, path in MODULES.items() for line, target in imports_inside_functions(m, path)
           if package(target) not in LAZY_PACKAGES and (m, target) not in LAZY_EXCEPTIONS]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("graph, cycle", [({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
                                          ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, False)])
def test_the_cycle_finder_finds_cycles(graph, cycle):
    assert (find_cycle(graph) is not None) == cycle
