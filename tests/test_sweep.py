"""Real-code sweep, CI slice: the engine over a fixed sample of the installed torch, lightning and accelerate
sources, both targets. The full sweep is `python benchmarks/sweep.py` (see its docstring)."""
import importlib.util
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
    assert stats.count("changed") >= 2, report  # the rules did run on library code


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
