"""The shape of the package's code: files and lines per room, the largest class, import circles,
DQN branches outside the agents, files over 450 lines.

    python experiments/code_shape.py [--root .]

Prints a Markdown table; run it before and after a regroup to compare (docs/architecture.md quotes it).
An import circle is a cycle in the graph of ``psp_rl`` modules importing each other, counting imports
at any depth of a module (inside functions too: they close the circle when they run), not those
under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections import defaultdict
from pathlib import Path

# Where each import name's files live (pyproject's package-dir).
PACKAGE_DIRS = {"psp_rl.agents": "agents", "psp_rl.envs": "envs", "psp_rl": "psp_rl"}
DQN_BRANCH = re.compile(r"isinstance\([^)]*,\s*DQN\)|hasattr\([^)]*q_net|algo\s*[!=]=\s*[\"']dqn[\"']")
MAX_LINES = 450


def modules(root: Path) -> dict[str, Path]:
    """``psp_rl`` module name -> its file."""
    out = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            out.setdefault(name, path)  # psp_rl.agents is its own folder, not psp_rl/agents
    return out


def room(name: str, path: Path) -> str:
    """The room of a module: its package below ``psp_rl`` (the core's top-level modules are 'core')."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or path.name == "__init__.py" and name != "psp_rl" else "core"


def imports(tree: ast.AST, name: str, known: set[str]) -> set[str]:
    """The ``psp_rl`` modules ``tree`` imports at run time (a ``from package import module`` counts the
    module; imports under ``if TYPE_CHECKING:`` are for type checkers only and do not count)."""
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found |= {t for t in targets if t in known and t != name}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args()
    files = modules(args.root)
    rooms: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    graph, classes, long_files, branches = {}, [], [], []
    for name, path in files.items():
        text = path.read_text()
        tree = ast.parse(text)
        lines = len(text.splitlines())
        rooms[room(name, path)][0] += 1
        rooms[room(name, path)][1] += lines
        graph[name] = imports(tree, name, set(files))
        classes += [(node.end_lineno - node.lineno + 1, f"{name}.{node.name}") for node in ast.walk(tree)
                    if isinstance(node, ast.ClassDef)]  # fmt: skip
        if lines > MAX_LINES:
            long_files.append(f"{path} ({lines})")
        if not name.startswith("psp_rl.agents"):
            branches += [f"{path}:{i}" for i, line in enumerate(text.splitlines(), 1) if DQN_BRANCH.search(line)]
    print("| room | files | lines |\n|---|---:|---:|")
    for name, (count, lines) in sorted(rooms.items()):
        print(f"| {name} | {count} | {lines} |")
    size, largest = max(classes)
    circles = cycles(graph)
    print(f"\nlargest class: {largest} ({size} lines)")
    print(f"import circles: {len(circles)}" + "".join(f"\n  {' <-> '.join(c)}" for c in circles))
    print(f"DQN branches outside agents/: {len(branches)}" + "".join(f"\n  {b}" for b in branches))
    print(f"files over {MAX_LINES} lines: {len(long_files)}" + "".join(f"\n  {f}" for f in long_files))


if __name__ == "__main__":
    main()
