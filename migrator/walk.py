"""Which files a run covers: `.py` files under the paths given, skipping what no one wants touched."""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Iterator, List, Sequence

SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", "node_modules", "site-packages", ".tox", ".nox",
             ".mypy_cache", ".pytest_cache", ".ruff_cache", "build", "dist"}


def is_venv(path: Path) -> bool:
    return (path / "pyvenv.cfg").exists() or (path / "conda-meta").is_dir()


def excluded(path: Path, root: Path, patterns: Sequence[str]) -> bool:
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.as_posix()
    for pat in patterns:
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(path.name, pat) or fnmatch.fnmatch(rel, f"{pat}/*") \
                or any(fnmatch.fnmatch(part, pat) for part in Path(rel).parts):
            return True
    return False


def python_files(root: Path, exclude: Sequence[str] = ()) -> Iterator[Path]:
    """Every .py file under root: symlinks are not followed, hidden folders, caches and venvs are skipped."""
    root_real = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        keep: List[str] = []
        for d in sorted(dirnames):
            p = here / d
            if d.startswith(".") or d in SKIP_DIRS or p.is_symlink() or is_venv(p) or excluded(p, root, exclude):
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            p = here / f
            if not f.endswith(".py") or excluded(p, root, exclude):
                continue
            if p.is_symlink():
                try:
                    p.resolve().relative_to(root_real)
                except (ValueError, OSError, RuntimeError):
                    continue  # a link out of the tree (or a loop): not ours to rewrite
            yield p
