"""Issue 13: the self-check (PTM006) no longer has to refuse what the rules can decide themselves. Three kinds
seen on the ecosystem corpus (deep_text_recognition, mae_pretrain, dino_pretrain, detr_train), each decided by
the rules before the self-check would fire:

- a signature change a caller cannot follow: a printing helper called from a Dataset's __init__ (or, across
  files, from a class in its own module) keeps its parameters in every file (migrator/analysis.py, project.py);
- a DistributedSampler read for more than its loader (`print(sampler)`, `BatchSampler(sampler, ...)`) stays,
  with its set_epoch calls, and its loader is not set up (migrator/samplers.py, PTM132);
- a DDP / DataParallel wrapper goes only where its model is set up: the model is read off the optimizer's
  parameter groups through the unwrapped view (`model_without_ddp = model.module`, migrator/param_sources.py), and
  a wrapped model nothing sets up (an EMA teacher) keeps its wrapper with a TODO (PTM131).

The fixtures of each kind run on 2 CPU processes in test_distributed_scripts.py (torchrun originals) and
test_whole_scripts.py (one-process originals); here: the decisions themselves, and the CLI over each fixture
folder for both targets without a PTM006.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap

import libcst as cst
import pytest

from fixture_support import FIXTURES
from migrator import Options, migrate
from migrator import param_sources, samplers
from migrator.project import folder_fw_functions

TARGETS = ("fabric", "accelerate")
CASES = ("print_helper_in_dataset", "print_helper_across_files", "dataparallel_filtered", "unwrapped_view_groups",
         "batch_sampler_engine", "teacher_kept_ddp")


def d(s: str) -> str:
    return textwrap.dedent(s).lstrip()


def _body(src: str) -> cst.FunctionDef:
    return cst.parse_module(d(src)).body[0]


# -- which model an optimizer trains ------------------------------------------------------------------------------

def test_parameter_groups_built_in_a_loop_and_in_comprehensions():
    fn = _body("""
        def main():
            filtered = []
            for p in filter(lambda p: p.requires_grad, model.parameters()):
                filtered.append(p)
            groups = [{"params": [p for n, p in net.named_parameters() if "bias" in n]}]
            groups += [{"params": [p for n, p in net.named_parameters() if "bias" not in n]}]
    """)
    assert param_sources.owners(fn, "filtered", set()) == ["model"]
    assert param_sources.owners(fn, "groups", set()) == ["net"]


def test_parameter_groups_from_a_helper_count_only_a_known_model():
    fn = _body("""
        def main():
            groups = optim_factory.add_weight_decay(model_without_ddp, args.weight_decay)
            other = make_groups(args)
    """)
    assert param_sources.owners(fn, "groups", {"model_without_ddp"}) == ["model_without_ddp"]
    assert param_sources.owners(fn, "groups", set()) == []
    assert param_sources.owners(fn, "other", {"model"}) == []


@pytest.mark.parametrize("assignments,views", [
    ("v = model\nif distributed:\n    v = model.module\n", {"v": "model"}),
    ("v = model.module if ddp else model\n", {"v": "model"}),
    ("v = accelerator.unwrap_model(model)\n", {"v": "model"}),
    ("v = model\n", {}),  # a plain alias: nothing says which one the loop trains
    ("v = model.module\nv = other\n", {}),  # bound to something else too
])
def test_unwrapped_views(assignments, views):
    fn = _body("def main():\n" + textwrap.indent(assignments, "    "))
    assert param_sources.unwrapped_views(fn) == views


def test_a_plain_alias_of_a_model_the_script_sets_up_counts():
    fn = _body("def main():\n    v = model\n    if distributed:\n        v = model\n")
    assert param_sources.unwrapped_views(fn, {"model"}) == {"v": "model"}


# -- which samplers stay -------------------------------------------------------------------------------------------

def test_sampler_uses_that_only_feed_the_loader_are_not_reads():
    module = cst.parse_module(d("""
        sampler = DistributedSampler(ds) if distributed else None
        loader = DataLoader(ds, shuffle=(sampler is None), sampler=sampler)
        for epoch in range(2):
            if sampler is not None:
                sampler.set_epoch(epoch)
            loader.sampler.set_epoch(epoch)
        def make():
            return loader, sampler
    """))
    assert samplers.other_reads(module, {"sampler"}) == {}


def test_sampler_reads_and_what_is_made_from_them():
    module = cst.parse_module(d("""
        sampler_train = DistributedSampler(ds)
        print("sampler", sampler_train)
        batch_sampler_train = BatchSampler(sampler_train, 8, drop_last=True)
        loader = DataLoader(ds, batch_sampler=batch_sampler_train)
    """))
    reads = samplers.other_reads(module, {"sampler_train"})
    assert list(reads) == ["sampler_train"] and "print" in cst.Module([]).code_for_node(reads["sampler_train"])
    assert samplers.made_from(module, reads) == {"sampler_train", "batch_sampler_train", "loader"}


@pytest.mark.parametrize("target", TARGETS)
def test_a_sampler_passed_to_a_function_stays_with_its_loader_not_set_up(target):
    src = d("""
        import torch
        from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


        def describe(sampler):
            return len(sampler)


        def main():
            ds = TensorDataset(torch.randn(8, 4))
            sampler = DistributedSampler(ds)
            loader = DataLoader(ds, batch_size=4, sampler=sampler)
            print(describe(sampler))
            model = torch.nn.Linear(4, 1)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            for epoch in range(2):
                sampler.set_epoch(epoch)
                for (x,) in loader:
                    model(x).sum().backward()
                    optimizer.step()
    """)
    out = migrate(src, target).code
    assert "sampler = DistributedSampler(ds)" in out and "sampler=sampler" in out
    assert "sampler.set_epoch(epoch)" in out
    assert "setup_dataloaders(loader)" not in out and "prepare(loader)" not in out
    assert "TODO(pt-migrate) PTM132: the DistributedSampler `sampler` stays" in out
    assert "PTM120" not in out and "PTM140" not in out  # no second TODO on what PTM132 kept


# -- signatures a caller cannot follow -----------------------------------------------------------------------------

def test_a_helper_called_from_a_class_in_its_module_is_not_handed_the_object_across_files():
    case = FIXTURES / "print_helper_across_files" / "before"
    sources = {p.stem: p.read_text() for p in case.glob("*.py")}
    for target in TARGETS:
        assert "dataset.hierarchical_dataset" not in folder_fw_functions(sources, target)


@pytest.mark.parametrize("target", TARGETS)
def test_a_helper_also_called_from_a_dataset_keeps_its_parameters(target):
    src = (FIXTURES / "print_helper_in_dataset" / "before" / "train.py").read_text()
    out = migrate(src, target).code
    assert "def log_dataset(name, size, note=\"\"):" in out
    assert 'log_dataset("squares", n, note=f"(seed {seed})")' in out
    main = out[out.index("def main"):]
    assert "log_dataset(name=\"train\", size=len(data))" in main
    flag = "fabric.is_global_zero" if target == "fabric" else "accelerator.is_main_process"
    assert re.search(rf"if {flag}:\n\s+log_dataset\(name=", main)  # the call in reach: on the main process only


# -- DDP wrappers --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_a_wrapper_around_a_model_nothing_sets_up_stays(target):
    src = (FIXTURES / "teacher_kept_ddp" / "before" / "train.py").read_text()
    out = migrate(src, target, Options(accelerator="cpu")).code
    assert "teacher = DistributedDataParallel(teacher)" in out
    assert "student = DistributedDataParallel(student)" not in out
    assert "PTM131: kept the DDP/DataParallel wrapper: `teacher`" in out
    assert "teacher_without_ddp = teacher.module" in out


@pytest.mark.parametrize("target", TARGETS)
def test_the_unwrapped_view_before_the_setup(target):
    src = (FIXTURES / "unwrapped_view_groups" / "before" / "train.py").read_text()
    out = migrate(src, target).code
    view = "model_without_ddp = model" if target == "fabric" else "model_without_ddp = accelerator.unwrap_model(model)"
    assert view + "\n" in out and "model.module" not in out[out.index("def main"):]
    setup = "model, optimizer = fabric.setup(model, optimizer)" if target == "fabric" else \
        "model, optimizer = accelerator.prepare(model, optimizer)"
    assert out.index(view) < out.index(setup)


# -- the CLI over each fixture folder: no self-check error ---------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", CASES)
def test_cli_migrates_the_fixture_without_a_self_check_error(case, target, tmp_path):
    shutil.copytree(FIXTURES / case / "before", tmp_path / case)
    proc = subprocess.run([sys.executable, "-m", "migrator", str(tmp_path / case), "--target", target,
                           "--format", "json", "--diff"], capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    codes = [dg["code"] for f in report["files"] for dg in f.get("diagnostics", [])]
    assert "PTM006" not in codes and "PTM002" not in codes, proc.stdout[-3000:]


@pytest.mark.parametrize("target", TARGETS)
def test_a_caller_that_keeps_its_parameters_passes_nothing_on(target):
    """deep_text's test.py: `test()` (called at the main guard) keeps its parameters, so `benchmark_all_eval`,
    which only `test()` calls, has no object to be handed either; both keep theirs, as does the printing helper."""
    src = d("""
        import torch


        def log_eval(name, value):
            print(f"{name} {value:.4f}")


        def benchmark_all_eval(model):
            log_eval("benchmark", model(torch.ones(1, 2)).item())


        def test(model):
            benchmark_all_eval(model)
            log_eval("test", 0.0)


        def train():
            model = torch.nn.Linear(2, 1)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            for step in range(2):
                optimizer.zero_grad()
                loss = model(torch.ones(4, 2)).sum()
                loss.backward()
                optimizer.step()
                log_eval("loss", loss.item())
            return model


        if __name__ == "__main__":
            test(train())
    """)
    result = migrate(src, target)
    assert result.changed and not [x for x in result.diagnostics if x.code == "PTM006"], result.diagnostics
    for sig in ("def log_eval(name, value):", "def benchmark_all_eval(model):", "def test(model):"):
        assert sig in result.code


@pytest.mark.parametrize("target", TARGETS)
def test_an_if_elif_that_only_picks_the_optimizer_is_set_up_after_the_whole_statement(target):
    """dino: `if args.optimizer == "adamw": ... elif ...sgd: ... elif ...lars:` builds the optimizer in each branch and
    trains after the statement: the setup goes after it, for every branch (it went into the first branch only)."""
    src = d("""
        import torch


        def main(kind):
            model = torch.nn.Linear(2, 1)
            if kind == "adamw":
                optimizer = torch.optim.AdamW(model.parameters())
            elif kind == "sgd":
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            for step in range(2):
                optimizer.zero_grad()
                model(torch.ones(4, 2)).sum().backward()
                optimizer.step()
    """)
    out = migrate(src, target).code
    call = "fabric.setup(model, optimizer)" if target == "fabric" else "accelerator.prepare(model, optimizer)"
    assert out.count(call) == 1 and f"\n    model, optimizer = {call}\n    for step" in out
