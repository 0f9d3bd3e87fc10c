"""Fuzzing the engine: generated programs (hypothesmith) and mutated whole training scripts.

For every program and target: no exception and no PTM002 (internal error); when the input parses, so does the
output; a program without torch comes back byte for byte; migrating the output again changes nothing.

The tests here are a fast slice for CI. A longer run, printing counts:

    python -m tests.test_fuzz --long 500 [--seed 1] [--jobs 4] [--save DIR]
"""
from __future__ import annotations

import argparse
import ast
import os
import random
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import libcst as cst
import pytest

from migrator.engine import PARSE_ERROR, RULE_CRASH, migrate
from migrator.selfcheck import SELF_CHECK

REPO = Path(__file__).resolve().parent.parent
TARGETS = ("fabric", "accelerate")

TORCH_HEADER = '''import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
model = nn.Linear(4, 2).to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)
for x, y in loader:
    x, y = x.to(device), y.to(device)
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
'''
LOOP_START = "for x, y in loader:\n"


def seed_scripts() -> List[Path]:
    """Every fixtures/*/before/*.py and examples/train.py: the whole scripts that mutations start from."""
    return sorted(REPO.glob("fixtures/*/before/*.py")) + [REPO / "examples" / "train.py"]


# ---------------------------------------------------------------- checking one program


def parses(text: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text)
        cst.parse_module(text)
        return True
    except Exception:  # SyntaxError, ParserSyntaxError, RecursionError, ValueError (NUL) ...
        return False


# outcomes of one check; the last three are failures
OK, NOT_ACCEPTED, INVALID_INPUT = "ok", "not_accepted", "invalid_input"
CRASH, UNPARSABLE, NOT_IDEMPOTENT, CHANGED_NON_TORCH = "crash", "unparsable_output", "not_idempotent", "changed_non_torch"
SELF_CHECK_CHANGED = "self-check fired but the file changed"
FAILURES = (CRASH, UNPARSABLE, NOT_IDEMPOTENT, CHANGED_NON_TORCH, SELF_CHECK_CHANGED)


def check(src: str, target: str, idempotence: bool = True) -> Tuple[str, str]:
    """(outcome, detail) for one program and target."""
    try:
        r1 = migrate(src, target)
    except BaseException:
        return CRASH, "migrate() raised:\n" + traceback.format_exc()
    if any(d.code == RULE_CRASH for d in r1.diagnostics):
        return CRASH, f"{r1.error}\n{r1.trace or ''}"
    if "torch" not in src and (r1.changed or r1.code != src):
        return CHANGED_NON_TORCH, r1.code
    if any(d.code == SELF_CHECK for d in r1.diagnostics) and (r1.changed or r1.code != src):
        return SELF_CHECK_CHANGED, r1.code  # the self-check fired: the file must be left as it was
    if r1.error:
        return (NOT_ACCEPTED if any(d.code == PARSE_ERROR for d in r1.diagnostics) else CRASH), r1.error
    if not r1.changed:
        return (OK, "") if r1.code == src else (CHANGED_NON_TORCH, "changed=False but the code differs")
    if not parses(r1.code):
        return (UNPARSABLE, r1.code) if parses(src) else (INVALID_INPUT, "")
    if idempotence:
        try:
            r2 = migrate(r1.code, target)
        except BaseException:
            return CRASH, "second migrate() raised:\n" + traceback.format_exc()
        if any(d.code == RULE_CRASH for d in r2.diagnostics):
            return CRASH, f"second run: {r2.error}\n{r2.trace or ''}"
        if r2.changed:
            import difflib
            return NOT_IDEMPOTENT, "".join(difflib.unified_diff(r1.code.splitlines(True), r2.code.splitlines(True),
                                                                 "first run", "second run"))
    return OK, ""


def assert_ok(src: str, target: str, idempotence: bool = True) -> None:
    outcome, detail = check(src, target, idempotence)
    assert outcome not in FAILURES, f"{outcome} [{target}]\n--- input ---\n{src}\n--- detail ---\n{detail}"


# ---------------------------------------------------------------- mutations of whole scripts


class _Collect(cst.CSTVisitor):
    def __init__(self) -> None:
        self.blocks: List[cst.CSTNode] = []
        self.names: List[str] = []

    def visit_Module(self, node: cst.Module) -> None:
        if node.body:
            self.blocks.append(node)

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self.blocks.append(node)

    def visit_Name(self, node: cst.Name) -> None:
        if node.value not in ("True", "False", "None"):
            self.names.append(node.value)


class _EditBlock(cst.CSTTransformer):
    def __init__(self, edits: Dict[int, Callable[[list], list]]) -> None:
        super().__init__()
        self.edits = edits  # id(original block) -> new body from old body

    def _edit(self, original, updated):
        fn = self.edits.get(id(original))
        if fn is None:
            return updated
        body = fn(list(updated.body))
        if not body and isinstance(updated, cst.IndentedBlock):
            body = [cst.SimpleStatementLine([cst.Pass()])]
        return updated.with_changes(body=body)

    def leave_Module(self, original_node, updated_node):
        return self._edit(original_node, updated_node)

    def leave_IndentedBlock(self, original_node, updated_node):
        return self._edit(original_node, updated_node)


class _Rename(cst.CSTTransformer):
    def __init__(self, old: str, new: str) -> None:
        super().__init__()
        self.old, self.new = old, new

    def leave_Name(self, original_node, updated_node):
        return updated_node.with_changes(value=self.new) if updated_node.value == self.old else updated_node


def mutate_once(module: cst.Module, rng: random.Random) -> Tuple[cst.Module, str]:
    col = _Collect()
    module.visit(col)
    kind = rng.choice(["delete", "duplicate", "swap", "transplant", "rename", "rename"])
    if kind == "rename" and col.names:
        old = rng.choice(col.names)
        pool = sorted(set(col.names)) + ["renamed", "model", "device", "loss", "optimizer", "fabric", "accelerator"]
        new = rng.choice(pool)
        return module.visit(_Rename(old, new)), f"rename {old} -> {new}"
    if not col.blocks:
        return module, "no-op"
    block = rng.choice(col.blocks)
    n = len(block.body)
    i = rng.randrange(n)
    if kind == "delete":
        edits = {id(block): lambda b: b[:i] + b[i + 1:]}
        what = f"delete statement {i} of a block of {n}"
    elif kind == "duplicate":
        j = rng.randrange(n + 1)
        edits = {id(block): lambda b: b[:j] + [b[i]] + b[j:]}
        what = f"duplicate statement {i} at {j}"
    elif kind == "swap":
        j = rng.randrange(n)
        def swap(b):
            b[i], b[j] = b[j], b[i]
            return b
        edits = {id(block): swap}
        what = f"swap statements {i} and {j}"
    else:  # move a statement into another block (another function, loop, branch)
        other = rng.choice(col.blocks)
        stmt = block.body[i]
        j = rng.randrange(len(other.body) + 1)
        if other is block:
            edits = {id(block): lambda b: b[:j] + [stmt] + b[j:]}
        else:
            edits = {id(block): lambda b: b[:i] + b[i + 1:], id(other): lambda b: b[:j] + [stmt] + b[j:]}
        what = f"move statement {i} into another block at {j}"
    return module.visit(_EditBlock(edits)), what


def mutate(src: str, rng: random.Random, count: int) -> Tuple[str, List[str]]:
    module = cst.parse_module(src)
    history = []
    for _ in range(count):
        try:
            module, what = mutate_once(module, rng)
        except Exception as e:  # a mutation that libcst refuses (e.g. an invalid node): try another
            what = f"(skipped: {type(e).__name__})"
        history.append(what)
    return module.code, history


def mutants(n: int, seed: int, scripts: Optional[Sequence[Path]] = None) -> List[Tuple[str, str, str]]:
    """n (name, source, target) triples, reproducible from the seed."""
    scripts = list(scripts or seed_scripts())
    texts = {p: p.read_text() for p in scripts}
    out = []
    for k in range(n):
        rng = random.Random(f"{seed}:{k}")
        p = scripts[k % len(scripts)]
        code, history = mutate(texts[p], rng, rng.randint(1, 4))
        name = f"{p.relative_to(REPO)} seed={seed}:{k} [{'; '.join(history)}]"
        out.append((name, code, TARGETS[k % 2]))
    return out


def in_loop(program: str) -> str:
    """The generated program as the body of the header's training loop, before `loss.backward()`."""
    body = "".join("    " + line if line.strip() else line for line in program.splitlines(True))
    if body and not body.endswith(("\n", "\r")):
        body += "\n"
    return TORCH_HEADER.replace("    x, y = x.to(device)", body + "    x, y = x.to(device)", 1)


def with_header(program: str, where: int) -> str:
    if where == 0:
        return TORCH_HEADER + program
    if where == 1:
        return program + ("" if program.endswith(("\n", "\r")) or not program else "\n") + TORCH_HEADER
    return in_loop(program)


# ---------------------------------------------------------------- the fast slice (CI)

hypothesis = pytest.importorskip("hypothesis")
hypothesmith = pytest.importorskip("hypothesmith")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

def fast(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")  # hypothesmith compiles odd programs


@fast(100)
@given(hypothesmith.from_grammar(), st.sampled_from(TARGETS))
def test_generated_programs(src, target):
    assert_ok(src, target)


@fast(12)
@given(hypothesmith.from_node(), st.sampled_from(TARGETS))
def test_generated_cst_programs(src, target):
    assert_ok(src, target)


@fast(5)
@given(hypothesmith.from_grammar(), st.sampled_from(TARGETS), st.integers(0, 2))
def test_generated_programs_with_a_training_script(program, target, where):
    assert_ok(with_header(program, where), target)


@pytest.mark.parametrize("target", TARGETS)
def test_header_alone_is_migrated_and_idempotent(target):
    r = migrate(TORCH_HEADER, target)
    assert r.changed and not r.error and parses(r.code)
    assert not migrate(r.code, target).changed


SMALL = [p for p in seed_scripts() if len(p.read_text().splitlines()) <= 50][:6]


@pytest.mark.parametrize("k", range(4))
def test_mutated_scripts(k):
    (name, code, target), = mutants(1, seed=k, scripts=SMALL[k:] + SMALL[:k])
    outcome, detail = check(code, target)
    assert outcome not in FAILURES, f"{outcome} [{target}] {name}\n--- input ---\n{code}\n--- detail ---\n{detail}"


def test_mutations_are_reproducible():
    assert mutants(3, seed=7, scripts=SMALL) == mutants(3, seed=7, scripts=SMALL)


# ---------------------------------------------------------------- the long run


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def _check_job(job: Tuple[str, str, str, float]) -> Tuple[str, str, str, str, float]:
    name, src, target, timeout = job
    t0 = time.perf_counter()
    if timeout and hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        outcome, detail = check(src, target)
    except _Timeout:
        outcome, detail = "timeout", f"over {timeout} s"
    finally:
        if timeout and hasattr(signal, "SIGALRM"):
            signal.setitimer(signal.ITIMER_REAL, 0)
    return name, target, outcome, detail, time.perf_counter() - t0


def generated(n: int, seed: int, node: bool = False) -> List[str]:
    """n programs from hypothesmith, reproducible from the seed."""
    from hypothesis import seed as hseed
    progs: List[str] = []
    strategy = hypothesmith.from_node() if node else hypothesmith.from_grammar()

    @hseed(seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(src):
        progs.append(src)

    collect()
    return progs[:n]


def long_run(n: int, seed: int, jobs: int, timeout: float, save: Optional[Path]) -> Dict[str, int]:
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.time()
    jobs_list: List[Tuple[str, str, str, float]] = []
    for k, (name, code, target) in enumerate(mutants(n, seed)):
        jobs_list.append((f"mutant {name}", code, target, timeout))
    progs = generated(n, seed)
    rng = random.Random(seed)
    for k, prog in enumerate(progs):
        target = TARGETS[k % 2]
        jobs_list.append((f"hypothesmith #{k}", prog, target, timeout))
        where = rng.randrange(3)
        jobs_list.append((f"hypothesmith #{k} + training script ({['after', 'before', 'in the loop'][where]})",
                          with_header(prog, where), TARGETS[(k + 1) % 2], timeout))
    print(f"fuzz: {len(jobs_list)} programs ({n} mutants, {len(progs)} generated, {len(progs)} with a training "
          f"script); seed {seed}; {jobs} job(s); generation {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    counts: Dict[str, int] = {}
    failures = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for i, (name, target, outcome, detail, secs) in enumerate(pool.map(_check_job, jobs_list, chunksize=1)):
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome in FAILURES or outcome == "timeout":
                failures.append((name, target, outcome, detail, jobs_list[i][1]))
            if (i + 1) % 100 == 0:
                print(f"  {i + 1}/{len(jobs_list)} {counts}", file=sys.stderr, flush=True)
    figures = {"programs tried": len(jobs_list), "crashes": counts.get(CRASH, 0),
               "unparsable outputs": counts.get(UNPARSABLE, 0), "idempotence failures": counts.get(NOT_IDEMPOTENT, 0),
               "non-torch programs changed": counts.get(CHANGED_NON_TORCH, 0), "timeouts": counts.get("timeout", 0),
               "not accepted (parse errors)": counts.get(NOT_ACCEPTED, 0),
               "invalid inputs (mutation broke the syntax)": counts.get(INVALID_INPUT, 0), "ok": counts.get(OK, 0)}
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(f"time: {time.time() - t0:.0f} s")
    for k, (name, target, outcome, detail, src) in enumerate(failures):
        head = detail.strip().splitlines()
        print(f"FAILURE {outcome} [{target}] {name}: {head[-1] if head else ''}")
        if save:
            save.mkdir(parents=True, exist_ok=True)
            (save / f"{k:03d}_{outcome}_{target}.py").write_text(src)
            (save / f"{k:03d}_{outcome}_{target}.txt").write_text(f"{name}\n\n{detail}")
    return figures


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.test_fuzz", description="Long fuzzing run of the engine.")
    ap.add_argument("--long", type=int, required=True, metavar="N", help="N mutants and N generated programs "
                    "(each generated program also once with a training script)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=300, help="seconds per program (0: none)")
    ap.add_argument("--save", type=Path, default=None, help="write failing inputs and details here")
    args = ap.parse_args(argv)
    figures = long_run(args.long, args.seed, args.jobs, args.timeout, args.save)
    bad = figures["crashes"] + figures["unparsable outputs"] + figures["idempotence failures"] + \
        figures["non-torch programs changed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
