"""cosmic-ray filter: skip the mutants that only change a function's type annotations.

Under ``from __future__ import annotations`` the annotations of function arguments and return values
are strings that nothing evaluates (no module of ours reads them at run time), so a mutant of
``np.ndarray | None`` into ``np.ndarray - None`` cannot change behaviour: it is equivalent, and running
its tests only costs time. Class-level annotations are left alone (pydantic and dataclasses read them).
Usage, between ``cosmic-ray init`` and ``exec`` (tools/mutate): ``python tools/cr_filter_annotations.py SESSION.sqlite``.
"""

from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path

from cosmic_ray.tools.filters.filter_app import FilterApp
from cosmic_ray.work_item import WorkerOutcome, WorkResult


@lru_cache
def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """((row, col), (end row, end col)) of every argument and return annotation of ``path``'s functions
    (rows 1-based, columns 0-based, as cosmic-ray records positions); none without the future import."""
    tree = ast.parse(path.read_text())
    future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__" and
                 any(alias.name == "annotations" for alias in node.names) for node in tree.body)
    if not future:
        return []
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            notes = [a.annotation for a in every if a is not None and a.annotation is not None]
            notes += [node.returns] if node.returns is not None else []
            spans += [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in notes]
    return spans


def in_annotation(path: Path, start: tuple[int, int], end: tuple[int, int]) -> bool:
    return any(lo <= tuple(start) and tuple(end) <= hi for lo, hi in annotation_spans(path))


class AnnotationFilter(FilterApp):
    def description(self):
        return __doc__

    def filter(self, work_db, _args):
        skipped = 0
        for item in work_db.work_items:
            if all(in_annotation(Path(m.module_path), m.start_pos, m.end_pos) for m in item.mutations):
                work_db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
                skipped += 1
        print(f"cr_filter_annotations: {skipped} mutant(s) of type annotations skipped (equivalent)")


if __name__ == "__main__":
    sys.exit(AnnotationFilter().main())
