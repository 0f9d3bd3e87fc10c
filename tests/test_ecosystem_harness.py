"""The ecosystem harness (benchmarks/ecosystem) on one tiny script of our own: fetch from a local bare git repository
(no network), the static check for both targets, one CPU run of the original and of a migration, and the report."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ecosystem import harness as H  # noqa: E402
from benchmarks.ecosystem import report as R  # noqa: E402

TRAIN = textwrap.dedent('''\
    import argparse

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from helper import make_model


    def main():
        p = argparse.ArgumentParser()
        p.add_argument("--epochs", type=int, default=1)
        args = p.parse_args()
        torch.manual_seed(0)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        x = torch.randn(64, 4)
        y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
        loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
        model = make_model().to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for epoch in range(args.epochs):
            for xb, yb in loader:
                xb, yb = xb.to(device), yb.to(device)
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(model(xb).squeeze(-1), yb)
                loss.backward()
                optimizer.step()
            print(f"epoch {epoch} loss {loss.item():.4f}")


    if __name__ == "__main__":
        main()
    ''')
HELPER = "import torch\n\n\ndef make_model():\n    return torch.nn.Linear(4, 1)\n"


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eco")
    work = tmp / "work"
    (work / "src").mkdir(parents=True)
    (work / "src" / "train.py").write_text(TRAIN)
    (work / "src" / "helper.py").write_text(HELPER)
    _git("init", "-q", cwd=work)
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "tiny", cwd=work)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip()
    mirror_root = tmp / "mirrors"
    (mirror_root / "someone+tiny").mkdir(parents=True)
    _git("clone", "-q", "--bare", str(work), str(mirror_root / "someone+tiny" / "repo"), cwd=tmp)
    entry = {"name": "tiny", "repo": "someone/tiny", "commit": commit, "path": "src/train.py",
             "helpers": ["src/helper.py"], "difficulty": "simple"}
    recipes = tmp / "recipes"
    recipes.mkdir()
    (recipes / "tiny.json").write_text(json.dumps({"workdir": "src", "argv": ["--epochs", "1"], "timeout_s": 120,
                                                   "steps": 3}))
    cache = tmp / "cache"
    return {"tmp": tmp, "entry": entry, "recipes": recipes, "cache": cache, "mirror_root": mirror_root}


def test_fetch_from_a_mirror(corpus, monkeypatch):
    monkeypatch.setenv("PTM_ECO_NO_CLONE", "1")
    res = H.fetch([corpus["entry"]], corpus["mirror_root"], corpus["cache"], corpus["recipes"], log=lambda *a: None)
    assert res["tiny"] == {"ok": True, "source": "mirror", "missing": []}
    src = H.src_dir(corpus["entry"], corpus["cache"])
    assert (src / "src" / "train.py").read_text() == TRAIN
    assert (src / "src" / "helper.py").read_text() == HELPER


def test_fetch_reports_what_is_missing(corpus, monkeypatch):
    monkeypatch.setenv("PTM_ECO_NO_CLONE", "1")
    entry = dict(corpus["entry"], name="tiny-missing", helpers=["src/nope.py"])
    res = H.fetch([entry], corpus["mirror_root"], corpus["tmp"] / "cache2", corpus["recipes"], log=lambda *a: None)
    assert res["tiny-missing"]["ok"] is False and res["tiny-missing"]["missing"] == ["src/nope.py"]


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_static_check(corpus, target):
    H.fetch([corpus["entry"]], corpus["mirror_root"], corpus["cache"], corpus["recipes"], log=lambda *a: None)
    r = H.static_check(corpus["entry"], target, corpus["tmp"] / f"static-{target}", corpus["cache"])
    assert r["status"] == "migrated", r
    assert r["ok"], r["failures"]
    assert r["idempotent"] and not r["crashes"] and not r["selfcheck"]
    assert "src/train.py" in r["code_changed_files"]
    corpus.setdefault("static_rows", []).append(r)


def test_results_keep_no_source_lines():
    tb = ('Traceback (most recent call last):\n[rank1]:   File "x.py", line 3, in f\n[rank1]:     y = x.cuda()\n'
          '[rank1]:         ^^^^^^\nAssertionError: no CUDA')
    out = H.sanitize({"runs": [{"stderr_tail": tb, "error": "AssertionError: no CUDA"}]})
    assert out["runs"][0]["stderr_tail"] == ('Traceback (most recent call last):\n[rank1]:   File "x.py", line 3, in f\n'
                                            'AssertionError: no CUDA')
    assert out["runs"][0]["error"] == "AssertionError: no CUDA"


def test_leftovers_need_a_todo():
    assert H.leftovers("loss.backward()\n") == ["line 1: backward"]
    assert H.leftovers("# TODO(pt-migrate) PTM107: do it\nloss.backward()\n") == []
    assert H.leftovers("fabric.backward(loss)\naccelerator.backward(loss)\n# loss.backward()\n") == []
    assert H.leftovers("scaler = torch.cuda.amp.GradScaler()\n")[0].startswith("line 1: GradScaler")
    assert H.leftovers("m = DDP(model)\n")[0].startswith("line 1: DDP")


def test_one_cpu_run_and_parity(corpus):
    H.fetch([corpus["entry"]], corpus["mirror_root"], corpus["cache"], corpus["recipes"], log=lambda *a: None)
    entry, recipe = corpus["entry"], H.load_recipe("tiny", corpus["recipes"])
    base = corpus["tmp"] / "runs"
    orig_tree, mig_tree = base / "original", base / "accelerate"
    assert H.prepare_tree(entry, recipe, orig_tree, corpus["cache"]) is None
    assert H.prepare_tree(entry, recipe, mig_tree, corpus["cache"]) is None
    assert H.migrate(mig_tree, "accelerate")["rc"] == 0
    script = "src/train.py"
    orig = H._observed_run(recipe, orig_tree, orig_tree / script, 3, base / "obs-o")
    mig = H._observed_run(recipe, mig_tree, mig_tree / script, 3, base / "obs-m")
    assert orig["ok"] and mig["ok"], (orig, mig)
    assert len(orig["losses"]) == 3
    assert H._parity(orig["losses"], mig["losses"])["status"] == "pass"
    assert H._parity([1.0], [2.0])["status"] == "fail"


def test_report_renders_the_rows(corpus, tmp_path):
    H.fetch([corpus["entry"]], corpus["mirror_root"], corpus["cache"], corpus["recipes"], log=lambda *a: None)
    rows = corpus.get("static_rows") or [
        H.static_check(corpus["entry"], t, corpus["tmp"] / f"static2-{t}", corpus["cache"]) for t in H.TARGETS]
    H.write_json(tmp_path / "static.json", {"rows": rows, "date": "D", "tool_commit": "C", "versions": {},
                                            "command": "python -m benchmarks.ecosystem static"})
    text = R.render(tmp_path, entries=[corpus["entry"]])
    assert "| tiny | simple | fabric | migrated | pass |" in text
    assert text == R.render(tmp_path, entries=[corpus["entry"]])


def test_shim_runs_the_script_from_its_working_folder(tmp_path):
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    script = tree / "pkg" / "train.py"
    script.write_text("from lightning.fabric import Fabric\nfrom torch.utils.data import DataLoader\n"
                      "fabric = Fabric(accelerator='cpu', devices=2)\nfabric.launch()\n")
    recipe = {"workdir": ".", "pythonpath": ["."]}
    shim = H._shim(recipe, tree, script)
    text = shim.read_text()
    assert f"WORKDIR = {str(tree / '.')!r}" in text and f"SCRIPT = {str(script)!r}" in text
    # verify reads the launch and whether a DataLoader exists from the named file: the shim repeats them
    assert "Fabric(accelerator='cpu', devices=2) ... .launch()" in text and "builds a DataLoader" in text
    assert H._shim({"workdir": "pkg"}, tree, script) is None  # runs from its own folder: no shim
