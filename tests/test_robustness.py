"""Robustness: per-file errors, atomic writes, source fidelity (encodings, BOM, line endings), paths and links.

In-process through click's CliRunner (with -j 1) except where a real process is the point (SIGKILL mid-run,
no traceback on a real terminal)."""
import ast
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator import files as files_mod
from migrator.cli import migrate_command
from migrator.engine import PARSE_ERROR, RULE_CRASH, migrate
from migrator.files import SourceError, decode, write_atomic
from migrator.walk import python_files

REPO = Path(__file__).resolve().parent.parent
TRAIN = (REPO / "examples" / "train.py").read_text()
PY2 = 'import torch\n\nprint "loss"\nloss.backward()\noptimizer.step()\n'


def run(*args, input=None):
    return CliRunner().invoke(migrate_command, [*map(str, args), "-j", "1"], input=input, catch_exceptions=False)


def parses(text: str) -> bool:
    try:
        ast.parse(text)
        return True
    except SyntaxError:
        return False


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(TRAIN)
    return tmp_path


def no_traceback(r) -> None:
    assert "Traceback" not in r.output and "Traceback" not in r.stderr


# ---------------------------------------------------------------- errors per file


def test_parse_error_names_path_line_reason_and_other_files_still_migrate(tree):
    (tree / "py2.py").write_text(PY2)
    before = (tree / "py2.py").read_bytes()
    r = run("py2.py", "train.py", "--target", "fabric")
    assert r.exit_code == 2
    assert "py2.py:3:" in r.stderr and "Missing parentheses" in r.stderr, r.stderr
    assert (tree / "py2.py").read_bytes() == before
    assert "Fabric(" in (tree / "train.py").read_text()
    assert "1 error(s)" in r.stderr
    no_traceback(r)


BROKEN = {  # none of them looks like a training script: the pre-scan alone would have let them pass silently
    "no_torch.py": b'print "hello"\n',
    "torch_util.py": b"import torch\ndef f(:\n    pass\n",
    "half.py": b"import os\n\nx = (1,\n",
    "skipped.py": b"# pt-migrate: skip-file\nimport torch\nloss.backward()\ndef f(:\n",
}
WHERE = {"no_torch.py": ":1:", "torch_util.py": ":2:7:", "half.py": ":3:", "skipped.py": ":4:"}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_named_file_that_does_not_parse_is_reported_whatever_it_holds(tree, name):
    """Issue #17: exit 2 and path:line:col, the file untouched, the other files still migrated."""
    (tree / name).write_bytes(BROKEN[name])
    r = run(name, "train.py", "--target", "fabric")
    assert r.exit_code == 2, r.stderr
    assert f"{name}{WHERE[name]}" in r.stderr and "cannot parse" in r.stderr, r.stderr
    assert (tree / name).read_bytes() == BROKEN[name]
    assert "Fabric(" in (tree / "train.py").read_text()
    assert "1 error(s)" in r.stderr
    no_traceback(r)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_walked_file_that_does_not_parse_is_reported_whatever_it_holds(tree, jobs):
    (tree / "pkg").mkdir()
    for name, data in BROKEN.items():
        (tree / "pkg" / name).write_bytes(data)
    for i in range(8):  # enough files for a pool with -j 2
        (tree / "pkg" / f"ok{i}.py").write_text("import os\n")
    r = CliRunner().invoke(migrate_command, [".", "--target", "accelerate", "--check", "-j", jobs],
                           catch_exceptions=False)
    assert r.exit_code == 2, r.stderr
    for name in BROKEN:
        assert os.path.join("pkg", name) + WHERE[name] in r.stderr, r.stderr
    assert f"{len(BROKEN)} error(s)" in r.stderr and "would migrate 1 of 13" in r.stderr
    assert all((tree / "pkg" / name).read_bytes() == data for name, data in BROKEN.items())
    no_traceback(r)


def test_a_parse_error_in_the_json_report(tree):
    (tree / "bad.py").write_bytes(BROKEN["torch_util.py"])
    r = run("bad.py", "--target", "fabric", "--check", "--format", "json")
    import json
    [f] = json.loads(r.stdout)["files"]
    assert r.exit_code == 2 and f["error"].startswith("2:7: cannot parse")
    assert [(d["code"], d["line"], d["column"], d["severity"]) for d in f["diagnostics"]] == [
        ("PTM001", 2, 7, "error")]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the syntax is this Python's own")
def test_syntax_newer_than_this_python_that_libcst_reads_is_no_error(tree):
    """As for a training script: the standard library's parser refuses it, libcst decides."""
    (tree / "alias.py").write_text("type Vector = list[float]\n")
    r = run("alias.py", "--target", "fabric")
    assert r.exit_code == 0 and "0 error(s)" in r.stderr, r.stderr


def test_a_stdin_that_does_not_parse_is_reported():
    r = run("-", "--target", "fabric", input=b'print "x"\n')
    assert r.exit_code == 2 and "-:1:" in r.stderr and "cannot parse" in r.stderr, r.stderr


def test_a_run_of_parsable_files_that_are_not_scripts_does_not_import_libcst(tree):
    """The syntax check is the standard library's: libcst stays out of a run the pre-scan settles."""
    (tree / "util.py").write_text("import torch\n\n\ndef f(x):\n    return x + 1\n")
    code = ("import sys\nfrom migrator.cli import main\ntry:\n    main(['util.py', '--target', 'fabric', '--check'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\nassert 'libcst' not in sys.modules\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_parse_error_in_a_tree(tree):
    (tree / "pkg").mkdir()
    (tree / "pkg" / "bad.py").write_text("import torch\nloss.backward()\ndef f(:\n    pass\n")
    r = run(".", "--target", "accelerate")
    assert r.exit_code == 2
    assert os.path.join("pkg", "bad.py") + ":3:" in r.stderr
    assert "Accelerator(" in (tree / "train.py").read_text()
    no_traceback(r)


def test_missing_path(tree):
    r = run("nope.py", "train.py", "--target", "fabric")
    assert r.exit_code == 2 and "nope.py: error: no such file" in r.stderr
    assert "Fabric(" in (tree / "train.py").read_text()
    no_traceback(r)


def test_dangling_symlink_and_symlink_loop_named_explicitly(tree):
    os.symlink("gone.py", tree / "dangling.py")
    os.symlink("loop_b.py", tree / "loop_a.py")
    os.symlink("loop_a.py", tree / "loop_b.py")
    r = run("dangling.py", "loop_a.py", "train.py", "--target", "fabric")
    assert r.exit_code == 2
    assert "dangling.py: error: broken symbolic link" in r.stderr
    assert "loop_a.py: error:" in r.stderr
    assert "Fabric(" in (tree / "train.py").read_text()
    assert os.path.islink(tree / "dangling.py") and not (tree / "gone.py").exists()
    no_traceback(r)


def test_unreadable_file(tree, monkeypatch):
    # tests run as root, who reads anything: make reading one file fail as it would for a user
    (tree / "secret.py").write_text(TRAIN)
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "secret.py":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    r = run(".", "--target", "fabric")
    assert r.exit_code == 2
    assert "secret.py: error: permission denied (cannot read)" in r.stderr
    assert "Fabric(" in (tree / "train.py").read_text()
    assert (tree / "secret.py").read_text() == TRAIN
    no_traceback(r)


def test_directory_named_like_a_python_file_is_walked_not_read(tree):
    (tree / "x.py").mkdir()
    (tree / "x.py" / "inner.py").write_text(TRAIN)
    r = run("x.py", "--target", "fabric")
    assert r.exit_code == 0, r.stderr
    assert "Fabric(" in (tree / "x.py" / "inner.py").read_text()


@pytest.mark.parametrize("out", ["outdir", "outdir/", "newdir/"])
def test_output_directory_is_refused(tree, out):
    (tree / "outdir").mkdir()
    r = run("train.py", "--target", "fabric", "-o", out)
    assert r.exit_code == 2 and "directory" in r.stderr
    assert list((tree / "outdir").iterdir()) == [] and not (tree / "newdir").exists()
    assert (tree / "train.py").read_text() == TRAIN
    no_traceback(r)


def test_output_in_missing_folder_is_an_error_counted_in_the_summary(tree):
    r = run("train.py", "--target", "fabric", "-o", "no/such/dir/out.py")
    assert r.exit_code == 2
    assert "cannot write in" in r.stderr and "1 error(s)" in r.stderr
    assert (tree / "train.py").read_text() == TRAIN
    no_traceback(r)


def test_internal_error_has_no_traceback_unless_debug(tree, monkeypatch):
    from migrator.rules import BY_CODE

    def boom(self, wrapper, ctx):
        raise ZeroDivisionError("synthetic rule bug")

    monkeypatch.setattr(type(BY_CODE["PTM105"]), "apply", boom)  # setup-model-optimizer: runs on train.py
    (tree / "other.py").write_text("import os\n")
    r = run("train.py", "other.py", "--target", "fabric")
    assert r.exit_code == 2
    assert "internal error in rule" in r.stderr and "ZeroDivisionError: synthetic rule bug" in r.stderr
    assert "--debug" in r.stderr
    no_traceback(r)
    assert (tree / "train.py").read_text() == TRAIN
    r = run("train.py", "--target", "fabric", "--debug")
    assert r.exit_code == 2 and "Traceback" in r.stderr and "boom" in r.stderr


def test_no_traceback_from_a_real_process(tree):
    (tree / "py2.py").write_text(PY2)
    (tree / "noise.py").write_bytes(bytes(range(256)) * 4)
    p = subprocess.run([sys.executable, "-m", "migrator", "py2.py", "noise.py", "missing.py", "--target", "fabric",
                        "-j", "1"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr + p.stdout
    assert p.stderr.count("error") >= 3


def test_engine_never_raises_on_odd_input():
    odd = [None, b"import torch", 42, "", "\x00", "import torch\nloss.backward()\nx = '\ud800'\n",
           "import torch\nloss.backward()\nx = " + "(" * 5000 + ")" * 5000 + "\n",
           "import torch\nloss.backward()\nx = " + "1 + " * 3000 + "1\n",
           "import torch\nloss.backward()\nx = f'{" * 2000 + "}'" * 2000 + "\n",
           "import torch\nloss.backward()\n\tif x:\n  pass\n", "import torch\r\rloss.backward()\r"]
    for src in odd:
        for target in ("fabric", "accelerate", "keras"):
            r = migrate(src, target)
            assert r.error is None or r.code == src or not isinstance(src, str)
            assert not any(d.code == RULE_CRASH for d in r.diagnostics), (src, r.error)


def test_deep_nesting_is_a_clear_parse_error_not_a_crash():
    r = migrate("import torch\nloss.backward()\nx = " + "(" * 5000 + ")" * 5000 + "\n", "fabric")
    assert r.diagnostics[0].code == PARSE_ERROR and "nested" in r.error and r.diagnostics[0].line == 3


# ---------------------------------------------------------------- atomic writes


def test_permission_bits_kept(tree):
    os.chmod(tree / "train.py", 0o751)
    assert run("train.py", "--target", "fabric").exit_code == 0
    assert stat.S_IMODE(os.stat(tree / "train.py").st_mode) == 0o751
    assert "Fabric(" in (tree / "train.py").read_text()


def test_read_only_file_is_refused_even_for_root(tree):
    (tree / "ro.py").write_text(TRAIN)
    os.chmod(tree / "ro.py", 0o444)
    r = run("ro.py", "train.py", "--target", "fabric")
    assert r.exit_code == 2 and "ro.py: error: permission denied (read-only file)" in r.stderr
    assert (tree / "ro.py").read_text() == TRAIN and stat.S_IMODE(os.stat(tree / "ro.py").st_mode) == 0o444
    assert "Fabric(" in (tree / "train.py").read_text()
    assert not [p for p in tree.iterdir() if p.name.endswith(".tmp")]
    no_traceback(r)


def test_read_only_directory(tree, monkeypatch):
    # root may write in a 0o555 folder: simulate the refusal a user would get
    def mkstemp(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", mkstemp)
    r = run("train.py", "--target", "fabric")
    assert r.exit_code == 2 and "train.py: error: cannot write in" in r.stderr and "Permission denied" in r.stderr
    assert (tree / "train.py").read_text() == TRAIN
    no_traceback(r)


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch, exc):
    target = tmp_path / "t.py"
    target.write_text("old\n")

    def fsync(fd):
        raise exc

    monkeypatch.setattr(files_mod.os, "fsync", fsync)
    with pytest.raises(type(exc)):
        write_atomic(target, b"new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.py"]


def test_write_atomic_keeps_a_symlink_a_symlink(tmp_path):
    (tmp_path / "real.py").write_text("old\n")
    os.symlink("real.py", tmp_path / "link.py")
    write_atomic(tmp_path / "link.py", b"new\n")
    assert os.path.islink(tmp_path / "link.py") and (tmp_path / "real.py").read_text() == "new\n"


def test_write_atomic_new_file_honours_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "n.py", b"x = 1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "n.py").st_mode) == 0o640


def _variant(i: int) -> str:
    return TRAIN.replace("nn.Linear(16, 4)", f"nn.Linear(16, {4 + i})")


# The run, with every fsync slowed down so that the kill lands among the writes (between a temporary file's
# write and its rename, too), not before or after them.
SLOW_RUN = """
import os, sys, time
real = os.fsync
os.fsync = lambda fd: (time.sleep(0.04), real(fd))[1]
from migrator.cli import main
main(sys.argv[1:])
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_sigkill_mid_run_leaves_every_file_old_or_new(tmp_path):
    n = 12
    for i in range(n):
        (tmp_path / f"s{i:02d}.py").write_text(_variant(i))
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(tmp_path), "--target", "fabric", "-j", "1", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:  # kill once some files are written, not all
            if sum("Fabric(" in p.read_text() for p in tmp_path.glob("s*.py")) >= 2:
                break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    new = 0
    for i in range(n):
        text = (tmp_path / f"s{i:02d}.py").read_text()
        assert parses(text)
        if text != _variant(i):
            new += 1
            assert "Fabric(" in text and "fabric.backward(loss)" in text
    assert 2 <= new < n, new
    leftovers = [p.name for p in tmp_path.iterdir() if not (p.name.startswith("s") and p.name.endswith(".py"))]
    # at most the one file being written when the signal came; hidden, and no walk or import ever takes it
    assert len(leftovers) <= 1 and all(x.startswith(".") and x.endswith(".pt-migrate.tmp") for x in leftovers)
    assert [p.name for p in python_files(tmp_path)] == [f"s{i:02d}.py" for i in range(n)]
    # a second run finishes the job; the leftover does not disturb it
    r = subprocess.run([sys.executable, "-m", "migrator", str(tmp_path), "--target", "fabric", "-j", "1", "-q"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert all("Fabric(" in (tmp_path / f"s{i:02d}.py").read_text() for i in range(n))


# ---------------------------------------------------------------- source fidelity


def test_latin1_coding_cookie_kept(tree):
    src = "# -*- coding: latin-1 -*-\n# Entraînement rapide, déjà vu\n" + TRAIN
    (tree / "l1.py").write_bytes(src.encode("latin-1"))
    assert run("l1.py", "--target", "fabric").exit_code == 0
    data = (tree / "l1.py").read_bytes()
    assert data.startswith("# -*- coding: latin-1 -*-\n# Entraînement rapide, déjà vu\n".encode("latin-1"))
    text = data.decode("latin-1")
    assert "Fabric(" in text and parses(text)
    assert decode(data).encoding == "iso-8859-1"


def test_utf8_bom_kept(tree):
    (tree / "bom.py").write_bytes(b"\xef\xbb\xbf" + ("# café\n" + TRAIN).encode())
    assert run("bom.py", "--target", "accelerate").exit_code == 0
    data = (tree / "bom.py").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf# caf\xc3\xa9\n") and data.count(b"\xef\xbb\xbf") == 1
    assert "Accelerator(" in data.decode("utf-8-sig")


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_crlf_on_every_line_including_inserted_ones(tree, target):
    (tree / "w.py").write_bytes(TRAIN.replace("\n", "\r\n").encode())
    assert run("w.py", "--target", target).exit_code == 0
    data = (tree / "w.py").read_bytes()
    assert data != TRAIN.replace("\n", "\r\n").encode()
    assert data.count(b"\n") == data.count(b"\r\n") and b"\r\r" not in data


def test_mixed_endings_new_lines_take_the_majority(tree):
    first, rest = TRAIN.split("\n", 1)
    src = first + "\n" + rest.replace("\n", "\r\n")  # first line LF, all the others CRLF
    (tree / "m.py").write_bytes(src.encode())
    assert run("m.py", "--target", "fabric").exit_code == 0
    lines = (tree / "m.py").read_bytes().splitlines(keepends=True)
    bare = [ln for ln in lines if not ln.endswith(b"\r\n")]
    assert bare == [first.encode() + b"\n"], bare
    assert len(lines) > len(src.splitlines())


def test_lone_cr_endings(tree):
    (tree / "cr.py").write_bytes(TRAIN.replace("\n", "\r").encode())
    assert run("cr.py", "--target", "fabric").exit_code == 0
    data = (tree / "cr.py").read_bytes()
    assert b"\n" not in data and b"Fabric(" in data and parses(data.decode())


def test_tabs_and_trailing_whitespace_outside_changed_lines_untouched(tree):
    extra = "\n\ndef helper(a, b):   \n\tif a:\t\n\t\treturn b  \n\treturn a\t \n\n\nX = [1,   2]   # spaced   \n"
    src = TRAIN.replace('\n\nif __name__ == "__main__":', extra + '\n\nif __name__ == "__main__":')
    (tree / "t.py").write_text(src)
    assert run("t.py", "--target", "fabric").exit_code == 0
    out = (tree / "t.py").read_text()
    assert extra in out and "Fabric(" in out
    assert '    """Train a small MLP."""' not in out and out.startswith('"""Train a small MLP."""\n')


@pytest.mark.parametrize("name,data", [("empty.py", b""), ("comments.py", b"# torch loss.backward()\n# optim .step(\n"),
                                       ("blank.py", b"\n\n   \n"), ("plain.py", b"import os\nprint('x')\n")])
def test_files_that_are_not_training_scripts_stay_byte_identical(tree, name, data):
    (tree / name).write_bytes(data)
    r = run(name, "--target", "fabric")
    assert r.exit_code == 0, r.stderr
    assert (tree / name).read_bytes() == data


def test_python2_training_script_is_a_parse_error_not_rewritten(tree):
    (tree / "old.py").write_text(PY2)
    r = run("old.py", "--target", "accelerate")
    assert r.exit_code == 2 and "old.py:3:" in r.stderr and "cannot parse" in r.stderr
    assert (tree / "old.py").read_text() == PY2


@pytest.mark.parametrize("data,reason", [(bytes(range(256)) * 8, "binary data"),
                                         (b"\xff\xfe\x89PNG torch backward \xc3\x28" * 20, "not UTF-8"),
                                         (b"# coding: utf-8\nimport torch\nx = '\xe9'\nloss.backward()\n",
                                          "line 3: not utf-8"),
                                         (b"# coding: klingon\nimport torch\n", "coding")])
def test_binary_noise_and_bad_encodings(tree, data, reason):
    (tree / "noise.py").write_bytes(data)
    r = run("noise.py", "train.py", "--target", "fabric")
    assert r.exit_code == 2 and "noise.py: error:" in r.stderr and reason in r.stderr, r.stderr
    assert (tree / "noise.py").read_bytes() == data
    assert "Fabric(" in (tree / "train.py").read_text()
    no_traceback(r)


def test_stdin_round_trip_keeps_crlf():
    r = run("-", "--target", "fabric", input=TRAIN.replace("\n", "\r\n").encode())
    assert r.exit_code == 0
    assert "Fabric(" in r.stdout


# ---------------------------------------------------------------- paths


def _make_tree(root: Path, outside: Path) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "b.py").write_text(TRAIN)
    for d in (".hidden", "__pycache__", ".git", "venv", ".venv", "node_modules"):
        (root / d).mkdir()
        (root / d / "x.py").write_text(TRAIN)
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / ".hidden.py").write_text(TRAIN)
    outside.mkdir()
    (outside / "victim.py").write_text(TRAIN)
    os.symlink(outside / "victim.py", root / "to_outside.py")
    os.symlink(outside, root / "dir_outside")
    os.symlink(".", root / "self_loop")
    os.symlink("..", root / "sub" / "up_loop")
    os.symlink("sub/b.py", root / "alias.py")
    os.symlink(".hidden/x.py", root / "into_hidden.py")


def test_walk_skips_hidden_caches_venvs_links_out_and_loops(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text(TRAIN)
    _make_tree(root, tmp_path / "outside")
    found = [p.relative_to(root).as_posix() for p in python_files(root)]
    assert found == ["train.py", "sub/b.py"]


def test_run_over_tree_never_writes_outside_it(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text(TRAIN)
    _make_tree(root, tmp_path / "outside")
    monkeypatch.chdir(tmp_path)
    r = run("proj", "--target", "fabric")
    assert r.exit_code == 0, r.stderr
    assert "Fabric(" in (root / "train.py").read_text() and "Fabric(" in (root / "sub" / "b.py").read_text()
    assert (tmp_path / "outside" / "victim.py").read_text() == TRAIN
    for d in (".hidden", "__pycache__", ".git", "venv", ".venv", "node_modules"):
        assert (root / d / "x.py").read_text() == TRAIN
    assert (root / ".hidden.py").read_text() == TRAIN
    assert os.path.islink(root / "alias.py") and os.path.islink(root / "to_outside.py")


def test_symlink_loop_in_tree_does_not_hang(tmp_path):
    root = tmp_path / "loops"
    (root / "a" / "b").mkdir(parents=True)
    os.symlink("../..", root / "a" / "b" / "up")
    os.symlink("../a", root / "a" / "b" / "side")
    os.symlink("l2.py", root / "l1.py")
    os.symlink("l1.py", root / "l2.py")
    (root / "a" / "b" / "t.py").write_text(TRAIN)
    p = subprocess.run([sys.executable, "-m", "migrator", str(root), "--target", "fabric", "-j", "1"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr  # the two looping links are reported
    assert "l1.py: error:" in p.stderr
    assert "Fabric(" in (root / "a" / "b" / "t.py").read_text()


def test_output_writes_only_the_file_named(tree):
    before = {p.name for p in tree.iterdir()}
    r = run("train.py", "--target", "fabric", "-o", "migrated.py")
    assert r.exit_code == 0
    assert {p.name for p in tree.iterdir()} == before | {"migrated.py"}
    assert (tree / "train.py").read_text() == TRAIN and "Fabric(" in (tree / "migrated.py").read_text()


def test_output_unchanged_file_is_copied_with_its_encoding(tree):
    data = "# -*- coding: latin-1 -*-\n# é\nimport os\n".encode("latin-1")
    (tree / "plain.py").write_bytes(data)
    r = run("plain.py", "--target", "fabric", "-o", "copy.py")
    assert r.exit_code == 0 and (tree / "copy.py").read_bytes() == data


def test_write_atomic_refuses_a_non_regular_target(tmp_path):
    fifo = tmp_path / "f.py"
    os.mkfifo(fifo)
    with pytest.raises(SourceError, match="not a regular file"):
        write_atomic(fifo, b"x\n")
