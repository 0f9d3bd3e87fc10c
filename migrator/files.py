"""Reading and writing source files without losing anything: encoding, BOM, line endings, permissions."""
from __future__ import annotations

import io
import os
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceFile:
    text: str
    encoding: str
    bom: bool


class SourceError(Exception):
    """A file that cannot be read as Python source; the message says why."""


def decode(data: bytes) -> SourceFile:
    bom = data.startswith(b"\xef\xbb\xbf")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as e:
        raise SourceError(f"bad coding cookie: {e}") from None
    if encoding == "utf-8-sig":
        encoding = "utf-8"
    if bom:
        data = data[3:]
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as e:
        raise SourceError(f"not {encoding} text: {e}") from None
    if "\x00" in text:
        raise SourceError("binary data (NUL bytes), not Python source")
    return SourceFile(text, encoding, bom)


def encode(src: SourceFile, text: str) -> bytes:
    return (b"\xef\xbb\xbf" if src.bom else b"") + text.encode(src.encoding)


def read_source(path: Path) -> SourceFile:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise SourceError("is a directory") from None
    except FileNotFoundError:
        raise SourceError("no such file") from None
    except PermissionError:
        raise SourceError("permission denied (cannot read)") from None
    except OSError as e:
        raise SourceError(e.strerror or str(e)) from None
    return decode(data)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over the target: old or new, never half."""
    folder = path.parent
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    if path.exists() and not os.access(path, os.W_OK):
        raise SourceError("permission denied (read-only file)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".pt-migrate.tmp", dir=folder)
    except OSError as e:
        raise SourceError(f"cannot write in {folder}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
