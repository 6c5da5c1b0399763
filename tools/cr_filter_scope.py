"""cosmic-ray filter: mutate only the named functions, classes and module-level constants of a module.

A dataset module holds its decoders and label maps beside the readers of the official archive layouts
(file lists, folder walks, messages). ``make mutate`` measures the code that decides the numbers, so for
those modules it keeps the mutants inside the named top-level definitions (``def``/``class`` by name,
module-level assignments by target name) and marks every other one skipped: it is not run and does not
count. Usage, between ``cosmic-ray init`` and ``exec`` (tools/mutate):
``python tools/cr_filter_scope.py SESSION.sqlite NAME [NAME ...]``.
"""

from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path

from cosmic_ray.tools.filters.filter_app import FilterApp
from cosmic_ray.work_item import WorkerOutcome, WorkResult


def _names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return {t.id for t in targets if isinstance(t, ast.Name)}


@lru_cache
def spans(path: Path, names: frozenset[str]) -> list[tuple[int, int]]:
    """(first row, last row) of each top-level statement of ``path`` that defines one of ``names``
    (rows 1-based, as cosmic-ray records positions); an unknown name is an error."""
    tree = ast.parse(path.read_text())
    found = {node: _names(node) & names for node in tree.body}
    missing = names - set().union(*found.values())
    if missing:
        raise SystemExit(f"cr_filter_scope: {path} defines no top-level {', '.join(sorted(missing))}")
    first = {node: min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) for node in found}
    return [(first[node], node.end_lineno) for node, hit in found.items() if hit]


class ScopeFilter(FilterApp):
    def description(self):
        return __doc__

    def add_args(self, parser):
        parser.add_argument("names", nargs="+", help="top-level functions, classes or constants to mutate")

    def filter(self, work_db, args):
        names = frozenset(args.names)
        skipped = kept = 0
        for item in list(work_db.pending_work_items):
            inside = all(any(lo <= m.start_pos[0] and m.end_pos[0] <= hi for lo, hi in spans(Path(m.module_path), names))
                         for m in item.mutations)
            if inside:
                kept += 1
            else:
                work_db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
                skipped += 1
        print(f"cr_filter_scope: {kept} mutant(s) in {', '.join(sorted(names))} kept, {skipped} elsewhere skipped")


if __name__ == "__main__":
    sys.exit(ScopeFilter().main())
