"""`[tool.pt-migrate]` in pyproject.toml: found by walking up from the files; command-line flags override it.

    [tool.pt-migrate]
    target = "fabric"              # or "accelerate"
    select = ["PTM1"]              # rule codes or prefixes (a comma-separated string works too)
    ignore = ["PTM108"]
    launcher = "launch"            # or "fabric-run"
    precision = "bf16-mixed"
    devices = 2                    # or "auto"
    accelerator = "cpu"
    strategy = "ddp"
    num-nodes = 1
    exclude = ["legacy/", "*_old.py"]   # gitignore-style globs, relative to the pyproject.toml folder
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from migrator.options import LAUNCHERS, MATMUL_PRECISIONS, TARGETS

KEYS = ("target", "select", "ignore", "launcher", "precision", "devices", "accelerator", "strategy", "num-nodes",
        "exclude", "matmul-precision")


class ConfigError(Exception):
    """A [tool.pt-migrate] table that cannot be used; the message names the file and the key."""


@dataclass
class Config:
    path: Optional[Path] = None  # the pyproject.toml it came from (None: no config)
    values: Dict[str, Any] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    @property
    def root(self) -> Optional[Path]:
        return self.path.parent if self.path else None

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def _toml_loader():
    if sys.version_info >= (3, 11):
        import tomllib
        return tomllib
    try:
        import tomli  # type: ignore
        return tomli
    except ImportError:
        return None


def find_pyproject(start: Path) -> Optional[Path]:
    """The nearest pyproject.toml at or above `start` that has a [tool.pt-migrate] table (text check, no parse)."""
    start = Path(os.path.realpath(start))  # not resolve(): it raises on a symlink loop
    here = start if start.is_dir() else start.parent
    for d in (here, *here.parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            try:
                text = candidate.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if "pt-migrate" in text:
                return candidate
    return None


def _codes(key: str, value: Any, path: Path) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    raise ConfigError(f"{path}: [tool.pt-migrate] {key} must be a list of rule codes or a comma-separated string")


def _validate(raw: Dict[str, Any], path: Path, warnings: List[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in raw.items():
        norm = key.replace("_", "-")
        if norm not in KEYS:
            warnings.append(f"{path}: [tool.pt-migrate] unknown key {key!r} ignored (known: {', '.join(KEYS)})")
            continue
        if norm == "target":
            if value not in TARGETS:
                raise ConfigError(f"{path}: [tool.pt-migrate] target must be one of {', '.join(TARGETS)}, "
                                  f"not {value!r}")
        elif norm == "launcher":
            if value not in LAUNCHERS:
                raise ConfigError(f"{path}: [tool.pt-migrate] launcher must be one of {', '.join(LAUNCHERS)}, "
                                  f"not {value!r}")
        elif norm in ("select", "ignore"):
            value = _codes(norm, value, path)
        elif norm == "exclude":
            if isinstance(value, str):
                value = [value]
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ConfigError(f"{path}: [tool.pt-migrate] exclude must be a list of glob patterns")
        elif norm == "num-nodes":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{path}: [tool.pt-migrate] num-nodes must be an integer")
        elif norm == "matmul-precision":
            if value not in MATMUL_PRECISIONS:
                raise ConfigError(f"{path}: [tool.pt-migrate] matmul-precision must be one of "
                                  f"{', '.join(MATMUL_PRECISIONS)}")
        elif norm in ("devices", "precision", "accelerator", "strategy"):
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise ConfigError(f"{path}: [tool.pt-migrate] {norm} must be a string or an integer")
            value = str(value)
        out[norm] = value
    return out


def load_config(path: Path) -> Config:
    """Read [tool.pt-migrate] from one pyproject.toml. Raises ConfigError on a bad file or bad values."""
    loader = _toml_loader()
    if loader is None:
        return Config(None, {}, [f"{path}: [tool.pt-migrate] ignored: reading TOML needs Python 3.11+ or "
                                 f"`pip install tomli`"])
    try:
        with open(path, "rb") as f:
            data = loader.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # tomllib.TOMLDecodeError / tomli.TOMLDecodeError
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    table = data.get("tool", {}).get("pt-migrate")
    if table is None:
        return Config(None)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.pt-migrate] must be a table")
    warnings: List[str] = []
    values = _validate(table, path, warnings)
    return Config(path, values, warnings)


def discover(paths: Sequence[str], explicit: Optional[str] = None) -> Config:
    """The config for a run: `explicit` if given, else the nearest one above the first path (cwd for '-')."""
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"{explicit}: no such config file")
        return load_config(p)
    first = next((p for p in paths if p != "-"), None)
    found = find_pyproject(Path(first) if first else Path.cwd())
    return load_config(found) if found else Config(None)
