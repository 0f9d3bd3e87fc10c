"""The command line: modes, exit codes, formats, colour, trees. In-process through click's CliRunner."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator import __version__
from migrator.cli import main, migrate_command
from migrator.subcommands import explain, rules

SCRIPT = '''"""A tiny training script."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def main():
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = torch.nn.Linear(4, 2).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"loss {loss.item():.3f}")
    print(len(loader.dataset))


if __name__ == "__main__":
    main()
'''
HELPER = 'import os\n\n\ndef data_dir():\n    return os.environ.get("DATA", "data")\n'
BROKEN = "import torch\n\ndef f(:\n    loss.backward()\n    optimizer.step()\n"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "helper.py").write_text(HELPER)
    return tmp_path


def invoke(args, input=None, env=None):
    return CliRunner().invoke(migrate_command, args, input=input, env=env, catch_exceptions=False)


def test_in_place_rewrite(project):
    r = invoke(["train.py", "helper.py", "--target", "fabric"])
    assert r.exit_code == 0, r.output
    code = (project / "train.py").read_text()
    assert "fabric.backward(loss)" in code and "fabric = Fabric(" in code
    assert (project / "helper.py").read_text() == HELPER
    assert "migrated 1 of 2 file(s) to fabric" in r.stderr
    # a second run changes nothing
    r = invoke(["train.py", "--target", "fabric", "--check"])
    assert r.exit_code == 0 and (project / "train.py").read_text() == code


def test_diff_writes_nothing_and_exits_1(project):
    r = invoke(["train.py", "helper.py", "-t", "accelerate", "--diff"])
    assert r.exit_code == 1
    assert r.stdout.startswith("--- a/train.py\n+++ b/train.py\n")
    assert "+        accelerator.backward(loss)" in r.stdout
    assert "helper.py" not in r.stdout
    assert (project / "train.py").read_text() == SCRIPT
    assert "would migrate 1 of 2" in r.stderr


def test_check(project):
    r = invoke(["train.py", "-t", "fabric", "--check"])
    assert r.exit_code == 1 and r.stdout == "" and (project / "train.py").read_text() == SCRIPT
    r = invoke(["helper.py", "-t", "fabric", "--check"])
    assert r.exit_code == 0


def test_output_file(project):
    r = invoke(["train.py", "-t", "fabric", "-o", "train_fabric.py"])
    assert r.exit_code == 0
    assert (project / "train.py").read_text() == SCRIPT
    assert "fabric.backward(loss)" in (project / "train_fabric.py").read_text()
    r = invoke(["train.py", "helper.py", "-t", "fabric", "-o", "x.py"])
    assert r.exit_code == 2 and "exactly one input" in r.output


def test_stdin_to_stdout(project):
    r = invoke(["-", "-t", "accelerate"], input=SCRIPT)
    assert r.exit_code == 0
    assert "accelerator = Accelerator(" in r.stdout and "accelerator.backward(loss)" in r.stdout
    assert "pt-migrate:" not in r.stdout  # the summary goes to stderr
    r = invoke(["-", "-t", "accelerate"], input=HELPER)
    assert r.stdout == HELPER


def test_stdin_to_output_file(project):
    r = invoke(["-", "-t", "fabric", "-o", "out.py"], input=SCRIPT)
    assert r.exit_code == 0 and r.stdout == ""
    assert "fabric.backward(loss)" in (project / "out.py").read_text()
    r = invoke(["-", "-t", "fabric", "-o", "same.py"], input=HELPER)
    assert r.exit_code == 0 and r.stdout == "" and (project / "same.py").read_text() == HELPER


def test_unparsable_file_exits_2_and_others_are_still_processed(project):
    (project / "broken.py").write_text(BROKEN)
    r = invoke(["broken.py", "train.py", "-t", "fabric"])
    assert r.exit_code == 2
    assert re.search(r"broken\.py:3:\d+: cannot parse", r.stderr)
    assert "fabric.backward(loss)" in (project / "train.py").read_text()
    assert (project / "broken.py").read_text() == BROKEN
    assert "1 error(s)" in r.stderr


def test_missing_file_is_an_error_too(project):
    r = invoke(["nope.py", "-t", "fabric", "--check"])
    assert r.exit_code == 2 and "nope.py: error: no such file" in r.stderr


def test_version_and_help(capsys):
    r = invoke(["--version"])
    assert r.exit_code == 0 and __version__ in r.stdout
    r = invoke(["--help"])
    assert r.exit_code == 0
    assert "Examples:" in r.stdout and "pt-migrate train.py --target fabric" in r.stdout
    for flag in ("--format", "--no-color", "--config", "--exclude", "--exit-non-zero-on-fix"):
        assert flag in r.stdout


def test_directory_run(project):
    pkg = project / "pkg"
    pkg.mkdir()
    shutil.copy(project / "train.py", pkg / "train.py")
    (pkg / "util.py").write_text(HELPER)
    (project / ".venv").mkdir()
    (project / ".venv" / "pyvenv.cfg").write_text("")
    (project / ".venv" / "train.py").write_text(SCRIPT)
    r = invoke([".", "-t", "fabric", "--check"])
    assert r.exit_code == 1
    assert "would migrate 2 of 4 file(s) to fabric" in r.stderr
    assert "pt-migrate  [" not in r.stderr  # no progress bar off a terminal


def test_summary_line_is_printed_even_when_quiet(project):
    r = invoke(["helper.py", "-t", "fabric", "-q"])
    assert r.exit_code == 0 and "migrated 0 of 1 file(s)" in r.stderr


def test_exit_non_zero_on_fix(project):
    r = invoke(["train.py", "helper.py", "-t", "fabric", "--exit-non-zero-on-fix"])
    assert r.exit_code == 1 and "fabric.backward" in (project / "train.py").read_text()
    r = invoke(["train.py", "helper.py", "-t", "fabric", "--exit-non-zero-on-fix"])
    assert r.exit_code == 0


# -- formats

def test_format_json_schema(project):
    (project / "broken.py").write_text(BROKEN)
    r = invoke(["train.py", "helper.py", "broken.py", "-t", "fabric", "--diff", "--format", "json"])
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert set(doc) == {"version", "tool", "tool_version", "target", "mode", "files", "summary"}
    assert doc["version"] == 1 and doc["target"] == "fabric" and doc["mode"] == "diff"
    files = {f["path"]: f for f in doc["files"]}
    assert set(files) == {"train.py", "helper.py", "broken.py"}
    for f in doc["files"]:
        assert set(f) == {"path", "changed", "error", "diff", "diagnostics"}
        for d in f["diagnostics"]:
            assert set(d) == {"code", "line", "column", "severity", "message", "fixed", "needs_attention"}
    assert files["train.py"]["changed"] and files["train.py"]["diff"].startswith("--- a/train.py")
    assert any(d["code"] == "PTM107" and d["fixed"] for d in files["train.py"]["diagnostics"])
    assert files["helper.py"] == {"path": "helper.py", "changed": False, "error": None, "diff": "", "diagnostics": []}
    assert files["broken.py"]["error"] and files["broken.py"]["diagnostics"][0]["severity"] == "error"
    assert doc["summary"]["files"] == 3 and doc["summary"]["changed"] == 1 and doc["summary"]["errors"] == 1
    assert doc["summary"]["needs_attention"] >= 1  # len(loader.dataset)
    assert (project / "train.py").read_text() == SCRIPT


def test_format_github_annotations(project):
    (project / "broken.py").write_text(BROKEN)
    r = invoke(["train.py", "broken.py", "-t", "fabric", "--diff", "--format", "github"])
    lines = r.stdout.splitlines()
    assert lines and all(re.fullmatch(r"::(error|warning|notice) file=[^,]+,line=\d+,col=\d+,title=PTM\d+::.+", ln)
                         for ln in lines), r.stdout
    assert any(ln.startswith("::warning file=train.py,") and "title=PTM112::" in ln for ln in lines)
    assert any(ln.startswith("::error file=broken.py,line=3,") and "title=PTM001::" in ln for ln in lines)
    assert "--- a/" not in r.stdout


def test_format_markdown(project):
    r = invoke(["train.py", "helper.py", "-t", "accelerate", "--diff", "--format", "markdown"])
    assert r.exit_code == 1
    md = r.stdout
    assert md.startswith("## pt-migrate → accelerate\n")
    assert "| `train.py` | changed |" in md and "helper.py" not in md
    assert "### Needs attention" in md and "PTM112" in md
    assert "```diff\n--- a/train.py" in md
    assert (project / "train.py").read_text() == SCRIPT


def test_diff_applies_with_git_apply_to_the_in_place_result(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    monkeypatch.chdir(tmp_path)
    files = {
        "train.py": SCRIPT,
        "crlf.py": SCRIPT.replace("\n", "\r\n"),
        "sub/noeol.py": SCRIPT.rstrip("\n"),
        "helper.py": HELPER,
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(text.encode())
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "core.autocrlf=false"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    r = invoke([".", "-t", "fabric", "--diff"])
    assert r.exit_code == 1
    (tmp_path.parent / f"{tmp_path.name}.patch").write_bytes(r.stdout_bytes)  # raw: CliRunner's str drops \r
    invoke([".", "-t", "fabric"])
    expected = {name: (tmp_path / name).read_bytes() for name in files}
    assert expected["train.py"] != SCRIPT.encode()
    subprocess.run(git + ["checkout", "-q", "--", "."], check=True)
    assert (tmp_path / "train.py").read_text() == SCRIPT
    subprocess.run(git + ["apply", "--whitespace=nowarn", str(tmp_path.parent / f"{tmp_path.name}.patch")],
                   check=True)
    for name in files:
        assert (tmp_path / name).read_bytes() == expected[name], name


# -- colour

def test_no_colour_off_a_terminal(project):
    r = invoke(["train.py", "-t", "fabric", "--diff"])
    assert not ANSI.search(r.output)


class _Tty:
    """Make CliRunner's streams claim to be a terminal."""

    def __init__(self, monkeypatch):
        import migrator.cli as cli
        import migrator.report as report
        monkeypatch.setattr(report, "use_color", lambda stream, flag: (flag is not False)
                            and not os.environ.get("NO_COLOR"))
        monkeypatch.setattr(cli, "_isatty", lambda stream: False)


def test_colour_on_a_terminal_and_no_color_respected(project, monkeypatch):
    _Tty(monkeypatch)
    r = CliRunner().invoke(migrate_command, ["train.py", "-t", "fabric", "--diff"], color=True)
    assert ANSI.search(r.stdout) and ANSI.search(r.stderr)
    r = CliRunner().invoke(migrate_command, ["helper.py", "-t", "fabric"], color=True)
    assert ANSI.search(r.stderr)  # the summary line
    r = CliRunner().invoke(migrate_command, ["helper.py", "-t", "fabric", "--no-color"], color=True)
    assert not ANSI.search(r.output)
    r = CliRunner().invoke(migrate_command, ["helper.py", "-t", "fabric"], color=True, env={"NO_COLOR": "1"})
    assert not ANSI.search(r.output)


def test_use_color_rules(monkeypatch):
    from migrator.report import use_color

    class T:
        def isatty(self):
            return True

    class P:
        def isatty(self):
            return False

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(T(), None) and use_color(T(), True)
    assert not use_color(P(), None) and not use_color(T(), False)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(T(), None)
    monkeypatch.setenv("NO_COLOR", "")  # empty means unset (no-color.org)
    assert use_color(T(), None)


def test_progress_bar_only_on_a_terminal(project, monkeypatch):
    import migrator.cli as cli
    for i in range(3):
        (project / f"h{i}.py").write_text(HELPER)
    seen = []
    real = cli.click.progressbar

    def spy(*a, **k):
        seen.append(k.get("length"))
        return real(*a, **k)

    monkeypatch.setattr(cli.click, "progressbar", spy)
    invoke([".", "-t", "fabric", "--check"])
    assert seen == []
    monkeypatch.setattr(cli, "_isatty", lambda stream: True)
    r = invoke([".", "-t", "fabric", "--check"])
    assert seen == [5] and "would migrate 1 of 5" in r.stderr


# -- the real executable and subcommands

def test_subprocess_entry_point_and_no_color(project):
    exe = Path(sys.executable).parent / "pt-migrate"
    if not exe.exists():
        pytest.skip("pt-migrate not installed next to this Python")
    env = dict(os.environ, NO_COLOR="1")
    p = subprocess.run([str(exe), "train.py", "-t", "fabric", "--diff"], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "+++ b/train.py" in p.stdout and not ANSI.search(p.stdout + p.stderr)
    p = subprocess.run([str(exe), "explain", "PTM107"], capture_output=True, text=True)
    assert p.returncode == 0 and "What it does:" in p.stdout


def test_rules_and_explain():
    r = CliRunner().invoke(rules, [])
    assert r.exit_code == 0 and "PTM107" in r.stdout
    r = CliRunner().invoke(explain, ["ptm107"])
    assert r.exit_code == 0
    for section in ("What it does:", "Why:", "Fix safety:", "Example 1: before", "fabric (diff)", "accelerate (diff)"):
        assert section in r.stdout
    assert "+    fabric.backward(" in r.stdout or "fabric.backward(" in r.stdout
    r = CliRunner().invoke(explain, ["PTM999"])
    assert r.exit_code == 2 and "unknown rule" in r.output


def test_main_routes_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["rules"])
    assert e.value.code == 0 and "PTM107" in capsys.readouterr().out


ROOT_SCRIPT = '''import sys
sys.path.insert(0, ".")  # the repository root, as the README says to run it: python tools/train.py
import torch
from common.data import make_data
from model import Net


def main():
    torch.manual_seed(0)
    x, y = make_data(open("data/n.txt").read())
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(0, len(x), 4):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[i:i + 4]), y[i:i + 4])
        loss.backward()
        optimizer.step()
        print(f"loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
'''


def test_verify_cwd_runs_a_script_from_the_repository_root(tmp_path):
    """verify --cwd DIR: DIR is staged and the runs start there (data paths relative to it, imports from it); the
    script's folder stays first on the import path; the user's files are untouched."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "common").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "n.txt").write_text("16")
    (tmp_path / "common" / "__init__.py").write_text("")
    (tmp_path / "common" / "data.py").write_text(
        "import torch\n\n\ndef make_data(n):\n    g = torch.Generator().manual_seed(1)\n"
        "    return torch.randn(int(n), 3, generator=g), torch.randn(int(n), 1, generator=g)\n")
    (tmp_path / "tools" / "model.py").write_text(
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = torch.nn.Linear(3, 1)\n\n    def forward(self, x):\n        return self.fc(x)\n")
    script = tmp_path / "tools" / "train.py"
    script.write_text(ROOT_SCRIPT)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    from migrator.verify.command import run_verify
    alone = run_verify(script, [], "fabric", devices=1, checks="a", timeout=120)
    assert alone["exit_code"] == 1 and "No module named 'common'" in json.dumps(alone["runs"])  # from its folder
    report = run_verify(script, [], "fabric", devices=1, checks="a", timeout=120, cwd=tmp_path)
    assert report["exit_code"] == 0, json.dumps(report, indent=1)[-3000:]
    assert [c["status"] for c in report["checks"]] == ["pass"]
    assert report["runs"]["original"]["cwd"].endswith("original")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    from migrator.verify.command import verify
    r = CliRunner().invoke(verify, [str(script), "--target", "fabric", "--cwd", str(tmp_path / "common")])
    assert r.exit_code == 2 and "is not under" in r.output


def test_diff_of_an_absolute_path_outside_the_working_directory(tmp_path, monkeypatch):
    """`--- a/abs/path` as git writes it (was `a//abs/path`): `git apply` run from / applies it."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "elsewhere").mkdir()
    script = tmp_path / "proj" / "train.py"
    script.write_text(SCRIPT)
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = invoke([str(script), "--target", "fabric", "--diff"])
    assert r.exit_code == 1
    rel = script.as_posix().lstrip("/")
    assert r.stdout.startswith(f"--- a/{rel}\n+++ b/{rel}\n"), r.stdout[:200]
    assert "//" not in r.stdout.splitlines()[0]
    if shutil.which("git"):
        p = subprocess.run(["git", "apply", "--check", "-"], input=r.stdout, text=True, capture_output=True, cwd="/")
        assert p.returncode == 0, p.stderr


LOOP_LIB = '''import torch
from torch.utils.data import DataLoader, TensorDataset


def fit(model, optimizer, x, y, epochs=2):
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    for epoch in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
'''
LOOP_CALLER = '''import torch
from trainer import fit


def main():
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # made here: fit takes the object from main
    fit(model, optimizer, torch.randn(8, 4), torch.randint(0, 2, (8,)))


if __name__ == "__main__":
    main()
'''


def test_launch_hints_only_for_entry_scripts(tmp_path, monkeypatch):
    """After a folder run, "To run X on several devices" names the scripts that are started (a main guard, or
    training at module level), not a helper module migrated because a sibling calls it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "trainer.py").write_text(LOOP_LIB)
    (tmp_path / "train.py").write_text(LOOP_CALLER)
    (tmp_path / "flat.py").write_text(SCRIPT.replace('if __name__ == "__main__":\n    main()\n', "main()\n"))
    r = invoke([".", "--target", "fabric", "--diff"])
    assert r.exit_code == 1, r.output
    assert "To run train.py on several devices:" in r.stderr
    assert "To run flat.py on several devices:" in r.stderr  # module-level training code
    assert "To run trainer.py" not in r.stderr


def test_launch_hint_is_torchrun_where_the_code_reads_rank(tmp_path, monkeypatch):
    """A helper beside the script that reads RANK (MAE's and DETR's init_distributed_mode): Fabric's own launcher
    does not set it, so only torchrun is offered for Fabric; without such a read, `python train.py` is."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(LOOP_CALLER.replace("from trainer import fit", "from trainer import fit\nimport misc"))
    (tmp_path / "trainer.py").write_text(LOOP_LIB)
    r = invoke([".", "--target", "fabric", "--diff", "--devices", "2"])
    assert "python train.py    # Fabric starts 2 processes itself" in r.stderr, r.stderr
    (tmp_path / "misc.py").write_text('import os\n\n\ndef init_distributed_mode(args):\n'
                                      '    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:\n'
                                      '        args.rank = int(os.environ["RANK"])\n')
    r = invoke([".", "--target", "fabric", "--diff", "--devices", "2"])
    assert "python train.py    #" not in r.stderr, r.stderr
    assert "torchrun --nproc_per_node 2 train.py    # not `python train.py`: misc.py:5 reads RANK" in r.stderr
    # a module beside it that the script does not import is not its business
    (tmp_path / "train.py").write_text(LOOP_CALLER)
    r = invoke([".", "--target", "fabric", "--diff", "--devices", "2"])
    assert "python train.py    # Fabric starts 2 processes itself" in r.stderr, r.stderr


@pytest.mark.parametrize("code,entry", [
    ("import torch\nfabric = Fabric()\nfabric.launch()\n", True),
    ("def main():\n    fabric = Fabric()\n\n\nif '__main__' == __name__:\n    main()\n", True),
    ("for x in loader:\n    fabric.backward(loss)\n    optimizer.step()\n", True),
    ("def fit(fabric, model):\n    fabric.backward(model())\n", False),
    ("def fit(model):\n    fabric = Fabric()\n    fabric.launch()\n", False),
    ("class T:\n    def __init__(self):\n        self.a = Accelerator()\n", False),
    ("run = lambda: Fabric()\n", False),
    ("def main():\n    go()\n\n\ndef go():\n    Fabric().launch()\n\n\nmain()\n", True),
    ("def main():\n    go()\n\n\ndef go():\n    Fabric().launch()\n\n\nlog = setup()\n", False),
    ("def f(:\n", False),
])
def test_is_entry_script(code, entry):
    from migrator.launch import is_entry_script
    assert is_entry_script(code) is entry


def test_errors_count_every_error_level_diagnostic(project, monkeypatch):
    """A migration the self-check refuses (PTM006, error level) counts as errors in the JSON summary and the text
    summary line alike, and the exit status is 2 (README: 2 errors)."""
    from migrator import selfcheck
    monkeypatch.setattr(selfcheck, "_import_time_order",
                        lambda a, b: [selfcheck.Problem(7, "`x` is broken"), selfcheck.Problem(8, "`y` is broken")])
    r = invoke(["train.py", "helper.py", "--target", "fabric", "--check", "--format", "json"])
    doc = json.loads(r.stdout)
    diags = [d for f in doc["files"] for d in f["diagnostics"] if d["severity"] == "error"]
    assert [d["code"] for d in diags] == ["PTM006", "PTM006"]
    assert doc["summary"]["errors"] == 2 and doc["summary"]["changed"] == 0
    assert "; 2 error(s)." in r.stderr and r.exit_code == 2
    assert (project / "train.py").read_text() == SCRIPT
    r = invoke(["train.py", "--target", "fabric"])
    assert "; 2 error(s)." in r.stderr and r.exit_code == 2 and (project / "train.py").read_text() == SCRIPT


def test_a_folder_without_a_training_script_says_so(tmp_path):
    # new-user trial (2026-12-01): a folder of helpers, or an empty one, printed only "migrated 0 of N file(s)"
    (tmp_path / "util.py").write_text("def f():\n    return 1\n")
    r = invoke([str(tmp_path), "--target", "fabric"])
    assert r.exit_code == 0 and "no training script among 1 file(s)" in r.output
    assert (tmp_path / "util.py").read_text() == "def f():\n    return 1\n"


def test_launch_hint_for_a_script_kept_on_cpu_processes(tmp_path, monkeypatch):
    """A script the migration keeps on CPU processes (it pins the CPU: PTM101): Fabric's own launcher would start one
    process there, so torchrun is offered; Accelerate gets the CPU line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(LOOP_CALLER.replace("from trainer import fit\n", "").replace(
        "    fit(model, optimizer, torch.randn(8, 4), torch.randint(0, 2, (8,)))\n",
        '    device = torch.device("cpu")\n    model(torch.randn(8, 4).to(device)).sum().backward()\n'
        '    optimizer.step()\n'))
    r = invoke([".", "--target", "fabric", "--diff"])
    assert "torchrun --nproc_per_node N train.py    # CPU processes" in r.stderr, r.stderr
    assert "python train.py    #" not in r.stderr
    r = invoke([".", "--target", "accelerate", "--diff"])
    assert "# CPU: `accelerate launch --cpu` starts one process" in r.stderr, r.stderr


def test_launch_hint_quotes_a_file_name_for_the_shell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Seq2Seq(Attention).py").write_text(SCRIPT)
    r = invoke(["Seq2Seq(Attention).py", "--target", "fabric", "--diff"])
    assert "torchrun --nproc_per_node N 'Seq2Seq(Attention).py'" in r.stderr, r.stderr
