"""Run the engine over files: read, migrate, decide what to write. No printing here."""
from __future__ import annotations

import ast
import os
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple

from migrator.result import MigrationResult
from migrator.files import SourceError, SourceFile, encode, read_source
from migrator.options import Options
from migrator.prescan import may_be_training_script


@dataclass
class FileOutcome:
    path: str
    result: Optional[MigrationResult] = None
    error: Optional[str] = None  # could not read / parse / migrate: "line:col: reason" or a reason
    new_bytes: Optional[bytes] = None  # what to write when the file changed
    old_text: str = ""

    @property
    def changed(self) -> bool:
        return self.result is not None and self.result.changed and self.error is None

    def diff(self) -> str:
        """The unified diff the CLI prints for this file (migrator.report.unified_diff); "" when unchanged."""
        from migrator.report import unified_diff
        return unified_diff(self.path, self.old_text, self.result.code) if self.changed else ""


_index_cache = {}


def migrate_source(path: str, src: SourceFile, target: str, options: Options) -> FileOutcome:
    from migrator.engine import migrate  # here, not at the top: see migrator/result.py
    from migrator.project import ProjectIndex
    opts = options
    if path != "-" and src.text and "torch" in src.text and _maybe_entry(path, src.text):
        index = _index_cache.setdefault(target, ProjectIndex(target))
        try:
            ext = index.fw_functions_for(Path(path), src.text)
        except Exception:
            ext = frozenset()
        if ext:
            opts = replace(options, external_fw_functions=ext, module_name=Path(path).stem)
    result = migrate(src.text, target, opts)
    if not (result.error or result.changed or result.is_training_script or result.diagnostics):
        # left alone before or after parsing (skip-file, the pre-scan, not training): still reported if broken
        return _unchanged(path, src)
    return _outcome(path, src, result)


def _outcome(path: str, src: SourceFile, result: MigrationResult) -> FileOutcome:
    out = FileOutcome(path, result, old_text=src.text)
    if result.error:
        d = result.diagnostics[0] if result.diagnostics else None
        out.error = f"{d.line}:{d.column}: {result.error}" if d else result.error
    elif result.changed:
        out.new_bytes = encode(src, result.code)
    return out


def _unchanged(path: str, src: SourceFile) -> FileOutcome:
    """A file that is not migrated: unchanged, or a parse error (PTM001) when it does not parse, whatever it
    holds. The standard library's parser decides, in C and without libcst; only a file it refuses goes to the
    engine's parser for the verdict and the message (syntax newer than this Python that libcst reads is no error,
    as for a training script)."""
    text = src.text
    try:
        with warnings.catch_warnings():  # `"\d"` and the like: the user's code, not ours to warn about
            warnings.simplefilter("ignore")
            compile(text, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
        return FileOutcome(path, MigrationResult(text, False), old_text=text)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
        pass
    from migrator.engine import _parse  # libcst: only for a file that the standard library cannot parse
    failure = _parse(text)
    if isinstance(failure, MigrationResult):
        return _outcome(path, src, failure)
    return FileOutcome(path, MigrationResult(text, False), old_text=text)


_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import|import[ \t]+([\w.]+))", re.M)


_RELATIVE_IMPORT = re.compile(r"^[ \t]*from[ \t]+\.", re.M)
_folder_cache: Dict[Path, Tuple[FrozenSet[str], Dict[str, Set[str]], Optional[str]]] = {}


def _imported_modules(text: str, package: Optional[str] = None) -> Set[str]:
    """Top-level names of the absolute imports that may load a sibling file. A package module (relative imports,
    or an absolute import of its own top-level `package`) cannot run as a script, so its `import logging` is the
    top-level module, never a sibling logging.py: it imports no sibling by absolute name."""
    if "from ." in text and _RELATIVE_IMPORT.search(text):
        return set()
    names = {(a or b).split(".")[0] for a, b in _IMPORT.findall(text)} - {""}
    if package is not None and package in names:
        return set()
    return names


def _top_package(folder: Path) -> Optional[str]:
    """The name of the outermost package that holds `folder` (None when folder has no __init__.py)."""
    top = None
    while (folder / "__init__.py").exists() and folder.parent != folder:
        top, folder = folder.name, folder.parent
    return top


def _folder_facts(folder: Path) -> Tuple[FrozenSet[str], Dict[str, Set[str]], Optional[str]]:
    """The module names of a folder, for each which of its siblings import it (those that mention torch), and the
    top-level package the folder belongs to."""
    if folder not in _folder_cache:
        try:
            names = [p for p in os.listdir(folder) if p.endswith(".py")]
        except OSError:
            names = []
        stems = frozenset(n[:-3] for n in names)
        package = _top_package(folder)
        importers: Dict[str, Set[str]] = {}
        for n in names:
            try:
                text = (folder / n).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if "torch" in text:
                for mod in _imported_modules(text, package) & stems:
                    importers.setdefault(mod, set()).add(n[:-3])
        _folder_cache[folder] = (stems, importers, package)
    return _folder_cache[folder]


def _maybe_entry(path: str, text: str) -> bool:
    """A file the project index may tie to a sibling: an entry script that imports the module holding the loop
    (it has neither backward nor step), or a helper module that such a sibling imports. Only those need the
    parser despite a failed pre-scan (see migrator.project.ProjectIndex)."""
    if path == "-" or "torch" not in text or "import" not in text:
        return False
    p = Path(path)
    stems, importers, package = _folder_facts(p.resolve().parent)
    if (_imported_modules(text, package) & stems) - {p.stem}:
        return True
    return bool(importers.get(p.stem, set()) - {p.stem})


def check_together(outcomes: List[FileOutcome]) -> List[FileOutcome]:
    """The engine's self-check across the files of one run (migrator.selfcheck.across_files): a file whose
    migration breaks a call between it and another file of the run is left unchanged, with a PTM006 error."""
    from migrator import selfcheck
    texts = {o.path: (o.old_text, o.result.code if o.changed else o.old_text) for o in outcomes
             if o.result is not None and o.error is None and o.path != "-"}
    if len(texts) < 2 or not any(a != b for a, b in texts.values()):
        return outcomes
    failing = selfcheck.across_files(texts)
    for o in outcomes:
        if o.path in failing:
            from migrator.diagnostics import ERROR, Diagnostic
            diags = [Diagnostic(selfcheck.SELF_CHECK, line, 1, ERROR,
                                f"self-check: {message}; the file was left unchanged (not migrated)", False)
                     for line, message in failing[o.path]]
            o.result = MigrationResult(o.old_text, False, diags, is_training_script=True)
            o.new_bytes = None
    return outcomes


def _scan(path: str) -> Tuple[Optional[FileOutcome], Optional[SourceFile], bool]:
    """Read a file and pre-scan it: (the outcome of a file that cannot be read, None, False), or (None, its source,
    whether it goes to the engine)."""
    try:
        src = read_source(Path(path))
    except SourceError as e:
        return FileOutcome(path, error=str(e)), None, False
    return None, src, may_be_training_script(src.text) or _maybe_entry(path, src.text)


def _finish(path: str, src: SourceFile, candidate: bool, target: str, options: Options) -> FileOutcome:
    return migrate_source(path, src, target, options) if candidate else _unchanged(path, src)


def _one(path: str, target: str, options: Options) -> FileOutcome:
    done, src, candidate = _scan(path)
    return done or _finish(path, src, candidate, target, options)


def _chunk(paths: List[str], target: str, options: Options) -> List[FileOutcome]:
    """A worker's share of files the main process has not read: each is read, pre-scanned and checked or migrated
    here, once."""
    return [_one(p, target, options) for p in paths]


def _scanned_chunk(items: List[Tuple[str, SourceFile, bool]], target: str, options: Options) -> List[FileOutcome]:
    """A worker's share of files the main process has read and pre-scanned already."""
    return [_finish(p, src, candidate, target, options) for p, src, candidate in items]


# What one file costs, in CPU seconds, to decide between one process and a pool (measured on this project's
# fixtures and the torch / lightning / accelerate sources, docs/performance.md): the standard library's syntax check
# of a file the engine does not see, and an engine run (parse, analysis, ~20 rule passes, self-check) of one it
# does. A pool costs its start-up (forking, and the engine imported in each worker unless the main process has it)
# and the transfer of every file's text and outcome: it pays only when the work besides the largest file, which
# one worker does alone whatever the count, is well above that.
CHECK_S_PER_BYTE = 1.1e-7
ENGINE_S = 0.03
ENGINE_S_PER_BYTE = 1.2e-4
POOL_MIN_WORK_S = 0.6


def _cost(src: SourceFile, candidate: bool) -> float:
    n = len(src.text)
    return ENGINE_S + ENGINE_S_PER_BYTE * n if candidate else CHECK_S_PER_BYTE * n


def _free_cores(limit: int) -> int:
    """How many workers can run at once: the cores this process may use, less the load average (what other
    processes keep busy, as `make -l` reads it), at most `limit`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, min(limit, cores, int(cores - busy + 0.5)))


# how the last migrate_paths split its work, for `--debug` and benchmarks/tool_speed.py
last_plan = ""


def migrate_paths(paths: Iterable[str], target: str, options: Options, jobs: int = 0) -> Iterator[FileOutcome]:
    """Outcomes in the order of `paths`. jobs 1: in this process. jobs 0 (the default): this process reads and
    pre-scans the files in order and works out what they cost (`_cost`); it does the work itself while that is
    small, and hands it to a pool once the work besides the largest file exceeds POOL_MIN_WORK_S, with one worker
    per free core (`_free_cores`: none free, no pool). jobs N > 1: the same, at most N workers. `last_plan` says
    afterwards which it was."""
    global last_plan
    paths = list(paths)
    limit = _free_cores(jobs if jobs > 0 else (os.cpu_count() or 1)) if jobs != 1 and len(paths) > 1 else 1
    if limit == 1:
        last_plan = "one process" + ("" if jobs == 1 or len(paths) < 2 else " (no free core)")
        for p in paths:
            yield _one(p, target, options)
        return
    held: List[Tuple[str, Optional[FileOutcome], Optional[SourceFile], bool, float]] = []
    total = largest = 0.0
    for i, p in enumerate(paths):
        done, src, candidate = _scan(p)
        cost = _cost(src, candidate) if src is not None else 0.0
        held.append((p, done, src, candidate, cost))
        total += cost
        largest = max(largest, cost)
        if total - largest > POOL_MIN_WORK_S:
            last_plan = (f"a pool of {limit} workers (estimated work {total:.2f} s CPU after {i + 1} of "
                         f"{len(paths)} files)")
            yield from _pool(held, paths[i + 1:], target, options, limit)
            return
    last_plan = f"one process (estimated work {total:.2f} s CPU: too little for a pool)"
    for p, done, src, candidate, _ in held:  # little work: a pool would cost more than it saves
        yield done or _finish(p, src, candidate, target, options)


def _pool(held, rest: List[str], target: str, options: Options, limit: int) -> Iterator[FileOutcome]:
    """The files read so far (`held`, with what they cost) and those not read yet (`rest`), on worker processes;
    outcomes in order."""
    from concurrent.futures import ProcessPoolExecutor  # here: a one-file run does not need multiprocessing

    if any(candidate for _, _, _, candidate, _ in held):
        import migrator.engine  # noqa: F401  before the workers fork: they share it instead of each importing it
    # the costly files first, one per task, so that no worker is left with a big one at the end; the cheap ones in
    # chunks of about 50 ms of work; files not read yet in small chunks (the few that reach the engine cost 100x
    # a rejected one, and sit together in a tree)
    tasks: List[tuple] = []  # (cost, index of the first file, [(path, source, candidate)]): consecutive files
    chunk: List[tuple] = []
    chunk_cost, start = 0.0, 0
    for i, (p, done, src, candidate, cost) in enumerate(held + [("", None, None, False, 1.0)]):
        if chunk and (done is not None or cost >= 0.05 or chunk_cost >= 0.05):
            tasks.append((chunk_cost, start, chunk))
            chunk, chunk_cost = [], 0.0
        if done is not None or i == len(held):
            continue
        if cost >= 0.05:
            tasks.append((cost, i, [(p, src, candidate)]))
            continue
        if not chunk:
            start = i
        chunk.append((p, src, candidate))
        chunk_cost += cost
    tasks.sort(key=lambda t: -t[0])
    size = max(1, min(8, len(rest) // (limit * 64)))
    with ProcessPoolExecutor(max_workers=limit) as pool:
        by_index = {}
        for _, start, items in tasks:
            by_index[start] = pool.submit(_scanned_chunk, items, target, options)
        raw = [pool.submit(_chunk, rest[k:k + size], target, options) for k in range(0, len(rest), size)]
        i = 0
        while i < len(held):
            p, done, src, candidate, _ = held[i]
            if done is not None:
                yield done
                i += 1
                continue
            outcomes = by_index.pop(i).result()
            yield from outcomes
            i += len(outcomes)
        held.clear()
        for f in raw:
            yield from f.result()
