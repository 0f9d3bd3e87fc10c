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


def _skipped_dir(name: str) -> bool:
    return name.startswith(".") or name in SKIP_DIRS


def python_files(root: Path, exclude: Sequence[str] = ()) -> Iterator[Path]:
    """Every .py file under root, each once, in a stable order.

    Folder links are never followed (so link loops cannot hang the walk); hidden files and folders, caches, `.git`
    and virtual environments are skipped. A file link is kept only when it points to a file inside the tree that
    the walk would not reach by itself (a link out of the tree, a loop or a dangling link is not ours to rewrite;
    writing through a link to a file already walked would migrate it twice).
    """
    root_real = Path(os.path.realpath(root))
    found: List[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        keep: List[str] = []
        for d in sorted(dirnames):
            p = here / d
            if _skipped_dir(d) or p.is_symlink() or is_venv(p) or excluded(p, root, exclude):
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            p = here / f
            if f.endswith(".py") and not f.startswith(".") and not excluded(p, root, exclude):
                found.append(p)
    seen = {os.path.realpath(p) for p in found if not p.is_symlink()}
    for p in found:
        if p.is_symlink():
            real = os.path.realpath(p)
            try:
                rel = Path(real).relative_to(root_real)
            except ValueError:
                continue  # out of the tree
            if real in seen or any(_skipped_dir(part) for part in rel.parts[:-1]):
                continue  # walked already, or inside a folder the walk skips
            seen.add(real)  # a dangling link or a loop stays: reading it reports the error
        yield p
