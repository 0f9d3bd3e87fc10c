"""Run the engine over files: read, migrate, decide what to write. No printing here."""
from __future__ import annotations

import difflib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, List, Optional

from migrator.engine import MigrationResult, migrate
from migrator.files import SourceError, SourceFile, encode, read_source
from migrator.options import Options
from migrator.prescan import may_be_training_script
from migrator.project import ProjectIndex


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
        if not self.changed:
            return ""
        a, b = self.old_text.splitlines(keepends=True), self.result.code.splitlines(keepends=True)
        for i, lines in enumerate((a, b)):
            if lines and not lines[-1].endswith(("\n", "\r")):
                lines[-1] += "\n\\ No newline at end of file\n"
        return "".join(difflib.unified_diff(a, b, f"a/{self.path}", f"b/{self.path}"))


_index_cache = {}


def migrate_source(path: str, src: SourceFile, target: str, options: Options) -> FileOutcome:
    opts = options
    if path != "-" and src.text and "torch" in src.text:
        index = _index_cache.setdefault(target, ProjectIndex(target))
        try:
            ext = index.fw_functions_for(Path(path), src.text)
        except Exception:
            ext = frozenset()
        if ext:
            opts = replace(options, external_fw_functions=ext, module_name=Path(path).stem)
    result = migrate(src.text, target, opts)
    out = FileOutcome(path, result, old_text=src.text)
    if result.error:
        d = result.diagnostics[0] if result.diagnostics else None
        out.error = f"{d.line}:{d.column}: {result.error}" if d else result.error
    elif result.changed:
        out.new_bytes = encode(src, result.code)
    return out


def migrate_path(path: str, target: str, options: Options) -> FileOutcome:
    try:
        src = read_source(Path(path))
    except SourceError as e:
        return FileOutcome(path, error=str(e))
    return migrate_source(path, src, target, options)


def _read_or_skip(path: str):
    """Read a file once; the pre-scan settles most files of a tree here, before any worker sees them."""
    try:
        src = read_source(Path(path))
    except SourceError as e:
        return FileOutcome(path, error=str(e)), None
    if not may_be_training_script(src.text) and not _maybe_entry(src.text):
        return FileOutcome(path, MigrationResult(src.text, False), old_text=src.text), None
    return None, src


def _maybe_entry(text: str) -> bool:
    # an entry script whose loop lives in a sibling module has neither backward nor step
    return "torch" in text and "optim" in text


def migrate_paths(paths: Iterable[str], target: str, options: Options, jobs: int = 1) -> Iterator[FileOutcome]:
    """Outcomes in the order of `paths`; with jobs != 1, candidate files are migrated in worker processes."""
    paths = list(paths)
    if jobs == 1 or len(paths) < 8:
        for p in paths:
            done, src = _read_or_skip(p)
            yield done or migrate_source(p, src, target, options)
        return
    with ProcessPoolExecutor(max_workers=jobs or None) as pool:
        queued = []
        for p in paths:
            done, src = _read_or_skip(p)
            queued.append(done or pool.submit(migrate_source, p, src, target, options))
        for item in queued:
            yield item if isinstance(item, FileOutcome) else item.result()
