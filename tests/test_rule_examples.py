"""Every rule's own examples: run alone (select=the rule), each target gives the stored output."""
import libcst as cst
import pytest

from migrator import Options, migrate
from migrator.rules import REGISTRY

CASES = [(rule, i, target) for rule in REGISTRY for i, _ in enumerate(rule.examples) for target in rule.targets]


def test_every_rule_has_an_example():
    assert all(rule.examples for rule in REGISTRY)


def test_codes_are_unique_and_ordered_registry_is_explicit():
    codes = [r.code for r in REGISTRY]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("rule,index,target", CASES, ids=[f"{r.code}-{i}-{t}" for r, i, t in CASES])
def test_rule_example(rule, index, target):
    example = rule.examples[index]
    expected = getattr(example, target)
    result = migrate(example.before, target, Options(select=frozenset({rule.code})))
    assert result.error is None
    assert result.code == (example.before if expected is None else expected)
    cst.parse_module(result.code)
    again = migrate(result.code, target, Options(select=frozenset({rule.code})))
    assert again.code == result.code, "a second run must change nothing"
