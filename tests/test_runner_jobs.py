"""Issue #17, item 3: the default -j picks one process or a pool from the work it measured; outcomes are the same
and in the same order whatever it picks."""
from pathlib import Path

import pytest

from migrator import runner
from migrator.options import Options

ROOT = Path(__file__).resolve().parent.parent
TRAIN = (ROOT / "examples" / "train.py").read_text()


@pytest.fixture
def tree(tmp_path):
    """Training scripts among plain files, a broken file, an unreadable one: every kind of outcome, interleaved."""
    files = []
    for i in range(30):
        name = tmp_path / f"m{i:02d}.py"
        if i % 7 == 3:
            name.write_text(TRAIN.replace("lr=0.01", f"lr=0.0{i}"))
        elif i == 12:
            name.write_text("import torch\ndef f(:\n")
        elif i == 20:
            name.write_bytes(b"\x00\x01binary")
        else:
            name.write_text(f"import torch\n\n\ndef f{i}(x):\n    return x * {i}\n" * (1 + i % 4))
        files.append(str(name))
    return files


def summary(outcomes):
    return [(o.path, o.changed, o.error, o.result.code if o.result else None,
             [(d.code, d.line, d.message) for d in o.result.diagnostics] if o.result else None) for o in outcomes]


class NoPool:
    def __init__(self, *a, **k):
        raise AssertionError("a pool was started for a small run")


def test_small_work_stays_in_one_process(tree, monkeypatch):
    monkeypatch.setattr("concurrent.futures.ProcessPoolExecutor", NoPool)
    plain = [p for p in tree if "m03" not in p and "m10" not in p and "m17" not in p and "m24" not in p]
    outcomes = list(runner.migrate_paths(plain, "fabric", Options(), jobs=0))
    assert [o.path for o in outcomes] == plain
    assert sum(bool(o.error) for o in outcomes) == 2
    assert runner.last_plan.startswith("one process")  # what --debug prints (no free core, or little work)


@pytest.fixture
def two_free_cores(monkeypatch):
    monkeypatch.setattr(runner, "_free_cores", lambda limit: min(limit, 2))


@pytest.mark.parametrize("threshold", [-1.0, 0.3])  # pool from the first file / after a few files were read
def test_a_pool_gives_the_outcomes_of_one_process_in_order(tree, monkeypatch, threshold, two_free_cores):
    serial = summary(runner.migrate_paths(tree, "fabric", Options(), jobs=1))
    used = []
    real_pool = runner._pool

    def spy(held, rest, *args):
        used.append((len(held), len(rest)))
        return real_pool(held, rest, *args)

    monkeypatch.setattr(runner, "POOL_MIN_WORK_S", threshold)
    monkeypatch.setattr(runner, "_pool", spy)
    pooled = summary(runner.migrate_paths(tree, "fabric", Options(), jobs=2))
    assert used, "no pool was started"
    assert pooled == serial
    assert [s[0] for s in pooled] == tree
    assert sum(s[1] for s in pooled) == 4 and sum(bool(s[2]) for s in pooled) == 2


def test_training_scripts_are_work_enough_for_a_pool(tree, monkeypatch, two_free_cores):
    started = []
    monkeypatch.setattr(runner, "_pool", lambda held, rest, *a: started.append(1) or iter(()))
    list(runner.migrate_paths(tree, "fabric", Options(), jobs=0))
    assert started  # 4 scripts of ~0.25 s each
    assert runner.last_plan.startswith("a pool of 2 workers")


def test_no_free_core_no_pool(tree, monkeypatch):
    """A machine kept busy by other processes (load average at its core count): a pool would only compete."""
    monkeypatch.setattr("concurrent.futures.ProcessPoolExecutor", NoPool)
    monkeypatch.setattr(runner.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert runner._free_cores(8) == 1
    assert len(list(runner.migrate_paths(tree, "fabric", Options(), jobs=0))) == len(tree)


def test_free_cores_follow_the_load(monkeypatch):
    monkeypatch.setattr(runner.os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    for load, free in ((0.0, 4), (0.4, 4), (1.0, 3), (2.6, 1), (9.0, 1)):
        monkeypatch.setattr(runner.os, "getloadavg", lambda load=load: (load, load, load))
        assert runner._free_cores(16) == free, load
    monkeypatch.setattr(runner.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert runner._free_cores(2) == 2


def test_jobs_1_never_starts_a_pool(tree, monkeypatch):
    monkeypatch.setattr("concurrent.futures.ProcessPoolExecutor", NoPool)
    assert len(list(runner.migrate_paths(tree, "fabric", Options(), jobs=1))) == len(tree)


def test_entry_script_and_helper_share_one_project_analysis(monkeypatch):
    """A folder of an entry script and the helper holding its loop: both files ask the project index about the
    same two modules, which is worked out once (it parses and analyses every module several times)."""
    from migrator import project
    calls = []
    real = project.folder_fw_functions
    monkeypatch.setattr(project, "folder_fw_functions", lambda sources, target: calls.append(sorted(sources)) or
                        real(sources, target))
    runner._index_cache.clear()
    case = ROOT / "fixtures" / "trainer_module" / "before"
    outs = list(runner.migrate_paths([str(case / "train.py"), str(case / "trainer.py")], "fabric", Options(), jobs=1))
    assert [o.changed for o in outs] == [True, True]
    assert "def train_epoch(fabric," in outs[1].result.code
    assert calls == [["train", "trainer"]]
    runner._index_cache.clear()
