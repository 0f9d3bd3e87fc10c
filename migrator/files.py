"""Reading and writing source files without losing anything: encoding, BOM, line endings, permissions."""
from __future__ import annotations

import io
import os
import stat
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
    if b"\x00" in data:
        raise SourceError("binary data (NUL bytes), not Python source")
    bom = data.startswith(b"\xef\xbb\xbf")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as e:
        if "invalid or missing encoding declaration" in str(e):
            raise SourceError("not UTF-8 text and no coding cookie (a binary file?)") from None
        raise SourceError(f"bad coding cookie: {e}") from None
    if encoding == "utf-8-sig":
        encoding = "utf-8"
    if bom:
        data = data[3:]
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise SourceError(f"line {line}: not {encoding} text ({e.reason}); add a coding cookie or fix the "
                          f"encoding") from None
    except LookupError as e:
        raise SourceError(f"unknown encoding: {e}") from None
    return SourceFile(text, encoding, bom)


def encode(src: SourceFile, text: str) -> bytes:
    return (b"\xef\xbb\xbf" if src.bom else b"") + text.encode(src.encoding)


def read_source(path: Path) -> SourceFile:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise SourceError("is a directory") from None
    except FileNotFoundError:
        raise SourceError("broken symbolic link" if path.is_symlink() else "no such file") from None
    except PermissionError:
        raise SourceError("permission denied (cannot read)") from None
    except OSError as e:  # ELOOP (a symlink loop), EIO, ...
        raise SourceError(e.strerror or str(e)) from None
    return decode(data)


TMP_SUFFIX = ".pt-migrate.tmp"


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over the target: old or new, never half.

    The file keeps its permission bits (and owner, where we may set it). A symbolic link stays a link: the file it
    points to is rewritten. A file without any write bit is refused even for root, who could write it anyway. If the
    process dies before the rename, only a hidden `.NAME.*.pt-migrate.tmp` is left beside the file, never a `.py`.
    """
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    folder = path.parent
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise SourceError(f"cannot write: {e.strerror or e}") from None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise SourceError("not a regular file; nothing written")
        mode = stat.S_IMODE(st.st_mode)
        if not mode & 0o222 or not os.access(path, os.W_OK):
            raise SourceError("permission denied (read-only file); nothing written")
    else:
        mode = 0o666 & ~_umask()
    try:
        import tempfile  # here: a --check or --diff run writes nothing and need not import it (with random, shutil)

        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=folder)
    except OSError as e:
        raise SourceError(f"cannot write in {folder}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if st is not None and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                pass  # not allowed to give it away: the file is ours now, as with any editor
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
