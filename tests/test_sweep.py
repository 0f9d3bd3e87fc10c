"""Real-code sweep, CI slice: the engine over a fixed sample of the installed torch, lightning and accelerate
sources, both targets. The full sweep is `python benchmarks/sweep.py` (see its docstring)."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import sweep  # noqa: E402

pytestmark = pytest.mark.skipif(any(importlib.util.find_spec(p) is None for p in sweep.PACKAGES),
                                reason="torch, lightning and accelerate sources are needed")


def test_fixed_sample_is_reproducible_and_reaches_the_rules():
    a, b = sweep.fixed_sample(), sweep.fixed_sample.__wrapped__()
    assert a == b and len(a) == 150
    from migrator.prescan import may_be_training_script
    assert sum(may_be_training_script(p.read_text(errors="replace")) for p in a) >= 3


def test_sweep_of_a_fixed_sample():
    stats = sweep.sweep(sweep.fixed_sample(), jobs=1, timeout=120)
    report = stats.render()
    print(report)
    assert stats.files == 150
    assert stats.failures == 0, report + "\n\n" + "\n\n".join(
        f"{p['problem']} [{p['target']}] {p['path']}\n{p['detail']}" for p in stats.problems)
    # the rules did run on library code: a migration that the self-check refused (PTM006) ran them too. Since
    # issue #17 the utilities with a lone backward (lightning's measure_flops, torch's _op_coverage) are not
    # training scripts, so fewer of the sample's candidates reach the rules
    assert stats.count("changed") + stats.count("self_check") >= 2, report


def test_a_crash_is_counted(monkeypatch, tmp_path):
    from migrator.engine import MigrationResult, RULE_CRASH
    from migrator.diagnostics import Diagnostic

    def crashing(source, target, options=None):
        return MigrationResult(source, False, [Diagnostic(RULE_CRASH, 1, 1, "error", "boom", False)], error="boom",
                               trace="Traceback ...")

    monkeypatch.setattr(sweep, "migrate", crashing)
    f = tmp_path / "x.py"
    f.write_text("import torch\nloss.backward()\n")
    (tmp_path / "bad.py").write_bytes(b"\x00\x01")
    stats = sweep.sweep([f, tmp_path / "bad.py"], jobs=1)
    assert stats.count("crash") == 2 and stats.unreadable == 1 and stats.failures == 2


def _check(folders, target):
    import json
    import subprocess
    p = subprocess.run([sys.executable, "-m", "migrator", *map(str, folders), "--target", target, "--check",
                        "--format", "json"], capture_output=True, text=True, cwd=ROOT)
    return p.returncode, json.loads(p.stdout), p.stderr


def test_check_over_library_folders_exits_0():
    """Issue #17: torch/nn, lightning/fabric and accelerate hold no plain PyTorch training script, so --check
    changes nothing and reports nothing to do: lightning's measure_flops (a lone backward) is left alone."""
    folders = sweep.library_folders()
    rc, report, stderr = _check(folders, "fabric")
    assert report["summary"]["files"] >= 300, report["summary"]
    assert rc == 0, stderr[-3000:]
    assert report["summary"]["changed"] == report["summary"]["errors"] == report["summary"]["needs_attention"] == 0
    notes = {d["code"] for f in report["files"] for d in f["diagnostics"]}
    assert notes <= {"PTM005"}, notes  # accelerate's own test scripts: "already uses Accelerate", unchanged


def test_check_to_accelerate_touches_only_accelerates_own_training_scripts():
    """With --target accelerate, accelerate's test scripts are training scripts already on the target: the rules
    beyond the core still run on them (README). Nothing else of the three folders changes."""
    rc, report, stderr = _check(sweep.library_folders(), "accelerate")
    assert rc in (0, 1) and report["summary"]["errors"] == 0, stderr[-3000:]
    changed = [f["path"].replace(os.sep, "/") for f in report["files"] if f["changed"] or f["diagnostics"]]
    assert all("/accelerate/test_utils/scripts/" in p for p in changed), changed
