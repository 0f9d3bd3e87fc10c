"""[tool.pt-migrate] in pyproject.toml, flags over config, excludes, and the in-source opt-outs."""
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator import Options, migrate
from migrator import config as config_mod
from migrator.cli import migrate_command
from migrator.config import ConfigError, discover, find_pyproject, load_config

SCRIPT = '''import torch
from torch.utils.data import DataLoader, TensorDataset


def main():
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)
    for x, y in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        print(loss.item())


if __name__ == "__main__":
    main()
'''


def run(args, cwd):
    import os
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(migrate_command, args, catch_exceptions=False)
    finally:
        os.chdir(old)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_found_by_walking_up_from_the_files(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "accelerate"\nnum_nodes = 2\ndevices = 4\n')
    script = write(tmp_path / "src" / "pkg" / "train.py", SCRIPT)
    assert find_pyproject(script) == tmp_path / "pyproject.toml"
    cfg = discover([str(script)])
    assert cfg.values == {"target": "accelerate", "num-nodes": 2, "devices": "4"}
    assert cfg.root == tmp_path


def test_pyproject_without_our_table_is_passed_over(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "fabric"\n')
    write(tmp_path / "sub" / "pyproject.toml", '[project]\nname = "x"\n')
    script = write(tmp_path / "sub" / "train.py", SCRIPT)
    assert discover([str(script)]).get("target") == "fabric"


def test_target_from_config_and_flags_override(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "accelerate"\n')
    write(tmp_path / "train.py", SCRIPT)
    r = run(["train.py", "--diff"], tmp_path)
    assert r.exit_code == 1 and "accelerator.backward(loss)" in r.stdout
    r = run(["train.py", "--diff", "--target", "fabric"], tmp_path)
    assert r.exit_code == 1 and "fabric.backward(loss)" in r.stdout


def test_no_target_anywhere_is_a_clear_usage_error(tmp_path):
    write(tmp_path / "train.py", SCRIPT)
    r = run(["train.py"], tmp_path)
    assert r.exit_code == 2
    assert "no target" in r.output and "[tool.pt-migrate]" in r.output
    assert (tmp_path / "train.py").read_text() == SCRIPT


def test_options_from_config(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "fabric"\naccelerator = "cpu"\ndevices = 2\n'
                                       'strategy = "ddp"\nprecision = "bf16-mixed"\nlauncher = "launch"\n')
    write(tmp_path / "train.py", SCRIPT)
    r = run(["train.py", "--diff"], tmp_path)
    assert 'Fabric(accelerator="cpu", devices=2, strategy="ddp", precision="bf16-mixed")' in r.stdout
    r = run(["train.py", "--diff", "--devices", "3"], tmp_path)
    assert "devices=3" in r.stdout


def test_select_and_ignore_from_config(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "fabric"\nignore = ["PTM108"]\n')
    write(tmp_path / "train.py", SCRIPT)
    r = run(["train.py", "--diff"], tmp_path)
    assert "fabric.backward(loss)" in r.stdout and "fabric.print" not in r.stdout
    r = run(["train.py", "--diff", "--ignore", "PTM107"], tmp_path)  # the flag replaces the config value
    assert "fabric.print" in r.stdout and "fabric.backward" not in r.stdout
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "fabric"\nselect = "PTM107"\n')
    r = run(["train.py", "--diff"], tmp_path)
    assert "fabric.backward(loss)" in r.stdout and "Fabric(" not in r.stdout


def test_excludes_apply_in_directory_walks(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "fabric"\nexclude = ["legacy/", "*_old.py"]\n')
    write(tmp_path / "src" / "train.py", SCRIPT)
    write(tmp_path / "src" / "train_old.py", SCRIPT)
    write(tmp_path / "src" / "legacy" / "train.py", SCRIPT)
    r = run(["src", "--check", "--format", "json"], tmp_path)
    import json
    paths = [f["path"] for f in json.loads(r.stdout)["files"]]
    assert paths == ["src/train.py"]
    # a file named on the command line is migrated unless --force-exclude (the pre-commit hook passes it)
    r = run(["src/train_old.py", "--check"], tmp_path)
    assert r.exit_code == 1
    r = run(["src/train_old.py", "--check", "--force-exclude"], tmp_path)
    assert r.exit_code == 0 and "0 of 0 file(s)" in r.stderr


def test_config_exclude_is_relative_to_the_pyproject_folder(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "fabric"\nexclude = ["src/gen/*"]\n')
    write(tmp_path / "src" / "gen" / "train.py", SCRIPT)
    write(tmp_path / "src" / "train.py", SCRIPT)
    r = run(["src", "--check"], tmp_path)
    assert "would migrate 1 of 1 file(s)" in r.stderr
    r = run(["src", "--check", "--exclude", "train.py"], tmp_path)
    assert "0 of 0 file(s)" in r.stderr


def test_bad_values_and_unknown_keys(tmp_path):
    p = write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "keras"\n')
    with pytest.raises(ConfigError, match="target must be one of"):
        load_config(p)
    write(tmp_path / "train.py", SCRIPT)
    r = run(["train.py"], tmp_path)
    assert r.exit_code == 2 and "target must be one of" in r.stderr
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "fabric"\ncolour = true\n')
    r = run(["train.py", "--check"], tmp_path)
    assert r.exit_code == 1 and "unknown key 'colour'" in r.stderr
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate\ntarget = "fabric"\n')
    r = run(["train.py", "--check", "-t", "fabric"], tmp_path)
    assert r.exit_code == 2 and "not valid TOML" in r.stderr


def test_explicit_config_file(tmp_path):
    write(tmp_path / "conf" / "pyproject.toml", '[tool.pt-migrate]\ntarget = "accelerate"\n')
    write(tmp_path / "train.py", SCRIPT)
    r = run(["train.py", "--diff", "--config", "conf/pyproject.toml"], tmp_path)
    assert "accelerator.backward" in r.stdout


def test_without_a_toml_reader_config_is_skipped_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(config_mod, "_toml_loader", lambda: None)
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "accelerate"\n')
    write(tmp_path / "train.py", SCRIPT)
    r = run(["train.py", "--diff", "-t", "fabric"], tmp_path)
    assert r.exit_code == 1 and "fabric.backward" in r.stdout
    assert "ignored: reading TOML needs Python 3.11+ or `pip install tomli`" in r.stderr


# -- in-source opt-outs

@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_skip_file_returns_the_file_unchanged(target):
    src = "# pt-migrate: skip-file\n" + SCRIPT
    result = migrate(src, target)
    assert result.code == src and not result.changed and result.error is None


def test_skip_file_must_be_a_comment_of_its_own():
    src = SCRIPT.replace("def main():", "def main():  # see `# pt-migrate: skip-file` docs")
    assert migrate(src, "fabric").changed


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_skip_line_keeps_that_statement(target):
    src = SCRIPT.replace("        print(loss.item())", "        print(loss.item())  # pt-migrate: skip")
    result = migrate(src, target)
    assert result.changed
    assert "        print(loss.item())  # pt-migrate: skip\n" in result.code
    assert "backward(loss)" in result.code  # the rest is migrated
    kept = [d for d in result.diagnostics if d.code == "PTM004"]
    assert [d.line for d in kept] == [src.splitlines().index("        print(loss.item())  # pt-migrate: skip") + 1]
    assert migrate(result.code, target).code == result.code


def test_skip_line_covers_a_statement_over_several_lines():
    src = SCRIPT.replace("        loss.backward()", "        loss.backward(\n            retain_graph=False,\n"
                                                      "        )  # pt-migrate: skip")
    result = migrate(src, "fabric")
    assert "        loss.backward(\n            retain_graph=False,\n        )  # pt-migrate: skip" in result.code
    assert "fabric.print(loss.item())" in result.code


def test_skip_marker_in_a_string_is_not_a_comment():
    src = SCRIPT.replace("print(loss.item())", 'print(loss.item(), "# pt-migrate: skip")')
    assert "fabric.print(" in migrate(src, "fabric").code


def test_protect_blocks_a_reindented_line_and_keeps_the_file():
    from migrator.engine import MigrationResult
    from migrator.skip import protect

    src = "import torch\nx = 1  # pt-migrate: skip\ny = 2\n"
    moved = 'import torch\nif __name__ == "__main__":\n    x = 1  # pt-migrate: skip\n    y = 2\n'
    result = protect(src, MigrationResult(moved, True, [], is_training_script=True))
    assert result.code == src and not result.changed
    (d,) = result.diagnostics
    assert d.code == "PTM004" and d.line == 2 and d.severity == "warning" and "re-indented" in d.message


def test_protect_restores_only_the_touched_region_and_drops_its_fixed_diagnostics():
    from migrator.diagnostics import Diagnostic
    from migrator.engine import MigrationResult
    from migrator.skip import protect

    src = "a = 1\nloss.backward()  # pt-migrate: skip\nb = 2\nprint(b)\n"
    new = "a = 1\nfabric.backward(loss)  # pt-migrate: skip\nb = 2\nfabric.print(b)\n"
    diags = [Diagnostic("PTM107", 2, 1, "info", "backward", True), Diagnostic("PTM108", 4, 1, "info", "print", True)]
    result = protect(src, MigrationResult(new, True, diags, is_training_script=True))
    assert result.code == "a = 1\nloss.backward()  # pt-migrate: skip\nb = 2\nfabric.print(b)\n"
    assert [(d.code, d.line) for d in result.diagnostics] == [("PTM004", 2), ("PTM108", 4)]


def test_matmul_precision_from_config_and_flag(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "fabric"\nmatmul-precision = "high"\n')
    write(tmp_path / "train.py", SCRIPT)
    r = run(["train.py", "-o", "-"], tmp_path)
    assert r.exit_code == 0 and 'torch.set_float32_matmul_precision("high")' in r.stdout
    r = run(["train.py", "-o", "-", "--matmul-precision", "medium"], tmp_path)
    assert 'torch.set_float32_matmul_precision("medium")' in r.stdout
    write(tmp_path / "pyproject.toml", '[tool.pt-migrate]\ntarget = "fabric"\nmatmul-precision = "fast"\n')
    with pytest.raises(ConfigError, match="matmul-precision must be one of highest, high, medium"):
        load_config(tmp_path / "pyproject.toml")
