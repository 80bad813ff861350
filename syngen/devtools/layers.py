"""The import layers of a package, and its import circles: ``python -m syngen.devtools.layers [FOLDER]``.

Reads every ``.py`` file under the package folder (default: syngen's own) with :mod:`ast`, without importing
anything, and builds the graph of its imports of itself: every ``import``/``from ... import`` statement counts,
including those inside functions and under ``TYPE_CHECKING``, since each is an arrow in the design. With
``--depth 1`` (the default) a node is a top-level module or subpackage (``syngen.train``, ``syngen.runner``);
``--depth 0`` keeps every module apart. It prints the layers, lowest first (layer 0 imports nothing of the
package; each module imports only from lower layers), and exits 1 naming each circle with the lines that close it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

Graph = dict[str, dict[str, list[str]]]  # node -> imported node -> the "file:line"s of those imports


def modules(folder: Path) -> dict[str, Path]:
    """Each module's dotted name (``pkg.sub.mod``; a package by its ``__init__.py``) to its file, under the package
    at ``folder``."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path, name: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """The modules among ``known`` that the file ``path`` (module ``name``) imports, each with its line."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: drop level-1 trailing parts of this package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import sub` imports the submodule pkg.sub where there is one, else names in pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            while target and target not in known:  # `import pkg.mod.attr`-like spellings: the longest module
                target = target.rpartition(".")[0]
            if target:
                yield target, node.lineno


def node_of(name: str, depth: int) -> str:
    """The graph node module ``name`` belongs to: its first ``depth`` parts under the package (0: itself)."""
    parts = name.split(".")
    return name if depth == 0 else ".".join(parts[: 1 + depth])


def import_graph(folder: Path, depth: int = 1) -> Graph:
    """The package's imports of itself between nodes (see :func:`node_of`), without self-arrows."""
    found = modules(folder)
    graph: Graph = {}
    for name, path in found.items():
        source = node_of(name, depth)
        arrows = graph.setdefault(source, {})
        for target, line in imported(path, name, set(found)):
            target = node_of(target, depth)
            where = f"{path.relative_to(folder.parent)}:{line}"
            if target != source and where not in arrows.get(target, []):
                arrows.setdefault(target, []).append(where)
    for arrows in list(graph.values()):
        for target in arrows:
            graph.setdefault(target, {})
    return graph


def circles(graph: Graph) -> list[list[str]]:
    """One circle per strongly connected group of two or more nodes, as the nodes along it, first one repeated
    at the end (``[a, b, a]``); sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            groups.append([node, *group])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(_circle_through(graph, set(group)) for group in groups if len(group) > 1)


def _circle_through(graph: Graph, group: set[str]) -> list[str]:
    """A shortest circle through the group's first node (by name), inside the group: breadth-first search."""
    start = min(group)
    before: dict[str, str] = {}
    frontier = [start]
    while frontier:
        after = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(before[path[-1]])
                    return [*reversed(path), start]
                if target in group and target not in before:
                    before[target] = node
                    after.append(target)
        frontier = after
    raise AssertionError("a strongly connected group always has a circle")


def layers(graph: Graph) -> list[list[str]]:
    """The nodes by layer: layer 0 imports no other node, layer k imports only layers below k (at least one k-1).
    Nodes on a circle are left out."""
    placed: dict[str, int] = {}
    remaining = dict(graph)
    while remaining:
        ready = {n: targets for n, targets in remaining.items() if all(t in placed for t in targets)}
        if not ready:
            break
        for node, targets in ready.items():
            placed[node] = 1 + max((placed[t] for t in targets), default=-1)
            del remaining[node]
    out: list[list[str]] = [[] for _ in range(1 + max(placed.values(), default=-1))]
    for node, layer in sorted(placed.items()):
        out[layer].append(node)
    return out


def main(argv: list[str] | None = None) -> int:
    """Prints the layers of the package at FOLDER (default: syngen); returns 1 when there is a circle."""
    parser = argparse.ArgumentParser(prog="python -m syngen.devtools.layers", description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--depth", type=int, default=1, help="Module-name parts under the package per node (0: all).")
    args = parser.parse_args(argv)
    graph = import_graph(args.folder, args.depth)
    ordered = layers(graph)
    for number, layer in enumerate(ordered):
        print(f"{number:3d}  {'  '.join(layer)}")
    found = circles(graph)
    if left := sorted(set(graph) - {node for layer in ordered for node in layer}):
        print(f"not layered (on or above a circle): {'  '.join(left)}", file=sys.stderr)
    for circle in found:
        print(f"circle: {' -> '.join(circle)}", file=sys.stderr)
        for source, target in zip(circle, circle[1:], strict=False):
            print(f"  {source} -> {target}: {', '.join(graph[source][target])}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
