"""Whole-file fixtures: each fixtures/<case>/before/<file>.py, migrated to each target, equals
fixtures/<case>/<target>/<file>.py (or stays byte-identical when that file is absent), parses, and is a
fixed point of a second run.

Regenerate the expected files with PT_MIGRATE_UPDATE_GOLDENS=1 (then read the diffs before committing).
Goldens use the default Options() plus, for multi-file cases, the project options (module name and
sibling functions that take the framework object).
"""
import os

import libcst as cst
import pytest

from migrator import migrate
from fixture_support import FIXTURES, TARGETS, before_files, cases, has_goldens, is_noop, options_for

UPDATE = os.environ.get("PT_MIGRATE_UPDATE_GOLDENS") == "1"
PARAMS = [(case, f, t) for case in cases() for f in before_files(case) for t in TARGETS]


@pytest.mark.parametrize("case,file,target", PARAMS,
                         ids=[f"{c.name}/{f.name}-{t}" for c, f, t in PARAMS])
def test_fixture(case, file, target):
    if not (UPDATE or is_noop(case) or has_goldens(case)):
        pytest.skip(f"{case.name} has no expected outputs yet: generate them with PT_MIGRATE_UPDATE_GOLDENS=1")
    source = file.read_text()
    options = options_for(case, file)
    result = migrate(source, target, options)
    assert result.error is None, result.error
    expected_path = case / target / file.name
    if UPDATE:
        if result.code != source:
            expected_path.parent.mkdir(exist_ok=True)
            expected_path.write_text(result.code)
        elif expected_path.exists():
            expected_path.unlink()
    expected = expected_path.read_text() if expected_path.exists() else source
    assert result.code == expected
    cst.parse_module(result.code)
    compile(result.code, str(file), "exec")
    again = migrate(result.code, target, options)
    assert again.error is None, again.error
    assert again.code == result.code, "a second run must change nothing"


@pytest.mark.parametrize("case,file,target", PARAMS,
                         ids=[f"{c.name}/{f.name}-{t}" for c, f, t in PARAMS])
def test_rules_leave_their_own_output_alone(case, file, target, monkeypatch):
    """A script already on the target framework is left as it is before any rule runs (engine); the rules must
    be fixed points of their output on their own too, so that a script only partly on the framework is safe."""
    expected_path = case / target / file.name
    if not expected_path.exists():
        pytest.skip("unchanged by the migration")
    import migrator.engine
    monkeypatch.setattr(migrator.engine, "_MIGRATE_ON_TARGET", True)
    migrated = expected_path.read_text()
    again = migrate(migrated, target, options_for(case, file))
    assert again.error is None and again.code == migrated


def test_there_are_fixtures():
    assert len(cases()) >= 8 and FIXTURES.is_dir()
