"""The engine's shortcuts for speed change no output: trigger words, import-table names, report positions."""
import re
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider, QualifiedNameProvider

from migrator import migrate
from migrator.imports import ImportTable
from migrator.names import dotted
from migrator.positions import start_positions
from migrator.rules import REGISTRY, Rule

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for p in (ROOT / "fixtures").glob("*/before/*.py"))
EXAMPLES = [(r.code, i, ex.before) for r in REGISTRY for i, ex in enumerate(r.examples)]


def _inputs():
    for p in SCRIPTS:
        yield pytest.param(p.read_text(encoding="utf-8"), id=str(p.relative_to(ROOT / "fixtures")))
    for code, i, before in EXAMPLES:
        yield pytest.param(before, id=f"{code}-example-{i}")


_FAST = {}


def _fast(source: str, target: str):
    """The migration with every shortcut on, once per input: both equivalence tests compare against it."""
    if (source, target) not in _FAST:
        _FAST[source, target] = migrate(source, target)
    return _FAST[source, target]


@pytest.mark.parametrize("source", list(_inputs()))
@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_trigger_words_skip_only_passes_that_do_nothing(source, target, monkeypatch):
    fast = _fast(source, target)
    for rule in REGISTRY:
        monkeypatch.setattr(type(rule), "wanted", Rule.wanted)
        monkeypatch.setattr(type(rule), "triggers", ())
    every_pass = migrate(source, target)
    assert fast.code == every_pass.code
    assert fast.diagnostics == every_pass.diagnostics


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT / "fixtures")))
def test_positions_match_libcst(path):
    module = cst.parse_module(path.read_text(encoding="utf-8"))
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    expected = wrapper.resolve(PositionProvider)
    nodes = [n for n in expected if isinstance(n, (cst.Call, cst.BaseStatement, cst.Name, cst.With, cst.FunctionDef,
                                                   cst.Comparison, cst.Attribute, cst.WithItem))]
    found = start_positions(module, nodes)
    for n in nodes:
        assert found[id(n)] == (expected[n].start.line, expected[n].start.column), type(n).__name__


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT / "fixtures")))
def test_import_names_match_libcst_on_library_names(path):
    """Wherever libcst's provider names an imported thing by a plain name chain (`a.b.c`, which is what the rules
    ask about), the import table names the same. The provider also names `torch.Generator().manual_seed` as
    "torch.Generator.manual_seed"; the table does not, and no rule matches such a name."""
    source = path.read_text(encoding="utf-8")
    module = cst.parse_module(source)
    qnames = MetadataWrapper(module, unsafe_skip_copy=True).resolve(QualifiedNameProvider)
    table = ImportTable(source)
    checked = 0
    for node, names in qnames.items():
        if not isinstance(node, (cst.Name, cst.Attribute)) or dotted(node) is None:
            continue
        names = names() if callable(names) else names
        imported = {q.name for q in names if q.source.name == "IMPORT"}
        if imported:
            assert table.names(node) == imported
            checked += 1
    assert checked


ALIASED = '''import torch
from torch.nn.utils import clip_grad_norm_ as clip
from torch import manual_seed as seed_all


def step(model, optimizer, loss):
    loss.backward()
    clip(model.parameters(), 1.0)
    optimizer.step()


def main():
    seed_all(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        step(model, optimizer, model(torch.randn(8, 4)).sum())
'''


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_statements_reached_only_through_an_import_alias_are_still_migrated(target):
    """`clip(...)` spells no trigger word of the clipping rule; its import alias does, so `step` is visited."""
    code = migrate(ALIASED, target).code
    fw = "fabric" if target == "fabric" else "accelerator"
    assert "clip(model.parameters()" not in code
    assert f"{fw}.clip_grad" in code or f"{fw}.clip_gradients" in code
    assert "seed_all(0)" not in code


def test_no_rule_has_attribute_hooks():
    """RuleTransformer skips libcst's per-attribute hooks (`visit_Call_func`, ...): no rule may define one."""
    import importlib
    import pkgutil
    import re

    import migrator.rules as rules_pkg
    from migrator.rules.base import RuleTransformer

    hook = re.compile(r"^(visit|leave)_[A-Z]\w*_[a-z]\w*$")
    for info in pkgutil.iter_modules(rules_pkg.__path__):
        module = importlib.import_module(f"migrator.rules.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, RuleTransformer):
                ours = [c for c in obj.__mro__ if not c.__module__.startswith("libcst")]
                assert not [n for c in ours for n in vars(c) if hook.match(n)], obj


@pytest.mark.parametrize("source", list(_inputs()))
@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_fused_rules_give_what_separate_passes_give(source, target, monkeypatch):
    together = _fast(source, target)
    for rule in REGISTRY:
        monkeypatch.setattr(type(rule), "fusable", False)
    apart = migrate(source, target)
    assert together.code == apart.code
    assert together.diagnostics == apart.diagnostics


def test_a_group_that_cannot_share_a_traversal_runs_one_by_one(monkeypatch):
    """A fused rule that replaces a node by another type: the engine falls back to separate passes."""
    import libcst as cst
    from migrator.rules import BY_CODE

    original = type(BY_CODE["PTM108"]).transformer

    def retyping(self, ctx):
        t = original(self, ctx)
        t.leave_Expr = lambda o, u: cst.Pass() if isinstance(u.value, cst.Call) and \
            getattr(u.value.func, "value", None) == "print" else u
        return t

    monkeypatch.setattr(type(BY_CODE["PTM108"]), "transformer", retyping)
    result = migrate(ALIASED + "\nprint(1)\n", "fabric")
    # the import-time print goes under a LOCAL_RANK guard (PTM110), so the retyped statement is indented there
    assert result.error is None and re.search(r"^\s*pass$", result.code, re.M)
