"""Whole scripts run: the original, the Fabric output and the Accelerate output train alike on one process,
and the 2-process runs (Fabric launching itself; Accelerate under torchrun) really are 2-process runs.

One process: `step i loss x` lines of the three agree within 1e-5.
Two processes (CPU, gloo; Accelerate gets ACCELERATE_USE_CPU=1, what `accelerate launch --cpu` sets: a plain
`Accelerator()` under torchrun on a CPU-only machine otherwise trains each process alone): rank 0 reports WORLD_SIZE_SEEN=2 (tests/ws_runner.py), the number of step lines
is half (+-1) of the single-process count (the data is sharded) and no step line appears twice.

All runs of the selected cases are started at once on a small pool, each with a 120 s timeout, and each test
waits only for its own case. Most of a run's time is importing torch, Lightning and Accelerate (about 13 CPU
seconds of a case's 36 on 2 cores), so the one-process runs are forked from a server that has imported them
(multiprocessing's forkserver, OMP_NUM_THREADS=1 before torch loads); the 2-process runs start as users start
them (Fabric launching itself, torchrun), each rank a new interpreter.
"""
from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import psutil
import pytest

from migrator import migrate
from fixture_support import before_files, not_sharded, options_for, stops_early, whole_script_cases

pytestmark = pytest.mark.slow


RUNNER = Path(__file__).resolve().parent / "ws_runner.py"
TIMEOUT = 120
STEP = re.compile(r"^step (\d+) loss (-?[\d.]+(?:e[-+]?\d+)?|nan|inf)$")
CASES = whole_script_cases()
KINDS = ("before", "fabric", "accelerate", "fabric_2proc", "accelerate_2proc")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                        "GROUP_WORLD_SIZE", "PYTHONPATH")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1", PYTHONHASHSEED="0")
    return env


_PRELOAD = ["torch", "lightning.fabric", "accelerate", "ws_runner"]


def _forkserver():
    """multiprocessing's forkserver context with torch, Lightning and Accelerate imported.

    Called once, before the pool's threads start: the server takes the process's environment when it starts,
    and libgomp reads OMP_NUM_THREADS when torch loads it, so os.environ is the runs' for that moment. No
    thread is running in the server when it forks (nothing is computed there)."""
    from multiprocessing import forkserver
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(_env())
    try:
        forkserver.ensure_running()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return ctx


def _forked_run(cwd: str, argv: list, env: dict, out_path: str) -> None:
    """In the forked child: the run's folder, environment and output file, then tests/ws_runner.py's main as
    `python ws_runner.py SCRIPT` runs it."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    import ws_runner
    sys.argv = argv
    ws_runner.main()


def _run_forked(ctx, cmd, cwd: Path, extra_env: dict):
    """A one-process run (`python ws_runner.py SCRIPT`) forked from the preloaded server `ctx`: (exit code,
    output), the exit code None on a timeout."""
    out_path = cwd.parent / f"{cwd.name}.out"
    proc = ctx.Process(target=_forked_run, args=(str(cwd), cmd[1:], {**_env(), **extra_env}, str(out_path)))
    proc.start()
    proc.join(TIMEOUT)
    code = proc.exitcode
    if code is None:
        _kill_tree(proc.pid)
        proc.join()
    return code, out_path.read_text(errors="replace") if out_path.exists() else ""


def _run(cmd, cwd: Path, extra_env: dict):
    proc = subprocess.Popen(cmd, cwd=cwd, env={**_env(), **extra_env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        out, _ = proc.communicate()
        return None, out
    return proc.returncode, out


def _kill_tree(pid: int) -> None:
    """The launcher and every rank it started (torchrun puts its ranks in sessions of their own)."""
    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def _prepare(case: Path, root: Path) -> dict:
    """A folder per kind: the case's files as that kind runs them. Returns kind -> (folder, command, extra env)."""
    entry = next(f.name for f in before_files(case) if _is_entry(f))
    dirs = {}
    for kind in KINDS:
        d = root / kind
        d.mkdir(parents=True)
        for f in before_files(case):
            target = kind.split("_")[0]
            if kind == "before":
                text = f.read_text()
            elif kind.endswith("2proc") and target == "fabric":
                opts = options_for(case, f, accelerator="cpu", devices="2", strategy="ddp")
                result = migrate(f.read_text(), "fabric", opts)
                assert result.error is None, result.error
                text = result.code
            else:
                expected = case / target / f.name
                text = (expected if expected.exists() else f).read_text()
            (d / f.name).write_text(text)
        script = [str(RUNNER), entry]
        extra = {}
        if kind == "accelerate_2proc":
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] + script
            extra["ACCELERATE_USE_CPU"] = "1"
        else:
            cmd = [sys.executable] + script
        dirs[kind] = (d, cmd, extra)
    return dirs


def _is_entry(f: Path) -> bool:
    from migrator.launch import is_entry_script  # a flat script beside a helper module: training at module level
    text = f.read_text()
    return "__main__" in text or len(before_files(f.parent.parent)) == 1 or is_entry_script(text)


@pytest.fixture(scope="session")
def runs(request, tmp_path_factory):
    """Start every run of the selected cases at once; each test waits for its own futures."""
    selected = {item.callspec.params["case"].name for item in request.session.items
                if item.originalname == "test_whole_script" and hasattr(item, "callspec")}
    forked = partial(_run_forked, _forkserver())
    pool = ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2)))
    futures = {}
    root = tmp_path_factory.mktemp("whole_scripts")
    for case in CASES:
        if case.name not in selected:
            continue
        for kind, (d, cmd, extra) in _prepare(case, root / case.name).items():
            run = _run if kind.endswith("2proc") else forked
            futures[(case.name, kind)] = pool.submit(run, cmd, d, extra)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _steps(out: str):
    return [(int(m.group(1)), float(m.group(2))) for m in (STEP.match(l.strip()) for l in out.splitlines()) if m]


def _world(out: str):
    return [l.strip() for l in out.splitlines() if l.startswith("WORLD_SIZE_SEEN=")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_whole_script(case, runs):
    results = {kind: runs[(case.name, kind)].result() for kind in KINDS}
    for kind, (rc, out) in results.items():
        assert rc == 0, f"{case.name} {kind}: " + ("timed out" if rc is None else f"exit {rc}") + f"\n{out[-4000:]}"

    single = {k: _steps(results[k][1]) for k in ("before", "fabric", "accelerate")}
    base = single["before"]
    assert base, f"{case.name}: the original printed no step lines"
    for kind in ("fabric", "accelerate"):
        assert _world(results[kind][1]) == ["WORLD_SIZE_SEEN=1"], f"{kind}: {_world(results[kind][1])}"
        got = single[kind]
        assert [i for i, _ in got] == [i for i, _ in base], f"{case.name} {kind}: other steps than the original"
        worst = max(abs(a - b) for (_, a), (_, b) in zip(got, base))
        assert worst <= 1e-5, f"{case.name} {kind}: losses differ from the original by up to {worst}"

    for kind in ("fabric_2proc", "accelerate_2proc"):
        out = results[kind][1]
        assert _world(out) == ["WORLD_SIZE_SEEN=2"], f"{case.name} {kind}: {_world(out)}\n{out[-3000:]}"
        steps = _steps(out)
        lines = [l.strip() for l in out.splitlines() if STEP.match(l.strip())]
        expected = len(base) if not_sharded(case) else len(base) / 2
        if stops_early(case):  # stopped on a loss threshold: at a step of its own, but by every rank together
            assert steps, f"{case.name} {kind}: no step lines"
            # Fabric's launcher exits 0 when the rank it started fails: the rank left training dies in the all-reduce
            assert "Traceback" not in out, f"{case.name} {kind}: a rank failed\n{out[-3000:]}"
        else:
            assert abs(len(steps) - expected) <= 1, \
                f"{case.name} {kind}: {len(steps)} steps, one process had {len(base)}"
        assert len({i for i, _ in steps}) == len(steps), f"{case.name} {kind}: a step line printed twice"
        assert all(a != b for a, b in zip(lines, lines[1:])), f"{case.name} {kind}: a line printed twice in a row"
