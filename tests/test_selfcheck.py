"""The engine's self-check (migrator/selfcheck.py, PTM006): output that would break a script that ran is not
written. Each kind is checked on its own, then through the engine and the CLI (a file that fails is left
byte for byte, with an error diagnostic naming the input line)."""
import subprocess
import sys
import textwrap

import pytest

from migrator import migrate
from migrator.selfcheck import SELF_CHECK, across_files, changed_signatures, check


def d(s: str) -> str:
    return textwrap.dedent(s).lstrip()


def messages(src, out, target="fabric"):
    return [p.message for p in check(d(src), d(out), target)]


def test_sound_output_has_no_problems():
    src = "import torch\nm = torch.nn.Linear(1, 1)\nm(torch.ones(1)).sum().backward()\n"
    out = ("import torch\nfrom lightning.fabric import Fabric\nfabric = Fabric()\nm = torch.nn.Linear(1, 1)\n"
           "m = fabric.setup(m)\nfabric.backward(m(torch.ones(1)).sum())\n")
    assert check(src, out, "fabric") == []


def test_a_new_undefined_name_is_found_by_pyflakes():
    found = messages("""
        class T:
            def step(self, loss):
                loss.backward()
    """, """
        class T:
            def step(self, loss):
                fabric.backward(loss)
    """)
    assert found == ["`fabric` is not defined where the migrated code uses it"]


def test_an_undefined_name_already_in_the_input_is_not_ours():
    assert messages("x = y\n", "x = y  # kept\n") == []


def test_a_name_read_at_import_time_before_the_module_binds_it():
    found = messages("""
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if __name__ == "__main__":
            model = torch.nn.Linear(1, 1)
    """, """
        import torch
        device = str(fabric.device)
        if __name__ == "__main__":
            fabric = Fabric()
            model = torch.nn.Linear(1, 1)
    """)
    assert "`fabric` is used at import time before the module defines it" in found


def test_a_module_level_call_of_a_helper_that_reads_a_later_global():
    found = messages("""
        def log_row(v):
            print(v)
        log_row("header")
        fabric = None
    """, """
        def log_row(v):
            fabric.print(v)
        log_row("header")
        fabric = None
    """)
    assert found == ["`fabric` is used at import time before the module defines it"]


def test_a_function_handed_over_as_a_value_must_keep_its_parameters():
    found = messages("""
        def closure():
            return 1
        optimizer.step(closure)
    """, """
        def closure(fabric):
            return 1
        optimizer.step(closure)
    """)
    assert any("handed over as a value" in m for m in found)


def test_a_parameter_named_like_a_changed_function_is_not_that_function():
    # `def test(model, train=False)`: its `train` is the parameter, not the module's train(fabric, ...)
    found = messages("""
        def train(model):
            model.step()
        def test(model, train=False):
            model.train(train)
            return [train for train in (1,)], (lambda fit: fit)(train)
        train(1)
    """, """
        def train(fabric, model):
            model.step()
        def test(model, train=False):
            model.train(train)
            return [train for train in (1,)], (lambda fit: fit)(train)
        train(fabric, 1)
    """)
    assert not any("train" in m for m in found), found
    found = messages("def train(m):\n    pass\ndef test(m):\n    return train\n",
                     "def train(fabric, m):\n    pass\ndef test(m):\n    return train\n")
    assert any("handed over as a value" in m for m in found)


@pytest.mark.parametrize("call,fits", [("worker(1, cfg)", True), ("worker(0, 1, cfg)", False),
                                       ("worker(world_size=1, cfg=cfg)", True), ("worker(*a)", True),
                                       ("worker(1)", False), ("worker(1, cfg, rank=0)", False)])
def test_calls_of_a_changed_signature_must_fit(call, fits):
    found = messages(f"""
        def worker(rank, world_size, cfg):
            pass
        {call}
    """, f"""
        def worker(world_size, cfg):
            pass
        {call}
    """)
    assert (found == []) == fits, found


def test_a_class_whose_init_changed_and_self_method_calls():
    found = messages("""
        class Net:
            def __init__(self, a):
                self.a = a
            def run(self, x):
                return x
            def go(self):
                return self.run(1)
        n = Net(1)
    """, """
        class Net:
            def __init__(self, fabric, a):
                self.a = a
            def run(self, fabric, x):
                return x
            def go(self):
                return self.run(1)
        n = Net(1)
    """)
    assert len(found) == 2 and all("does not fit" in m for m in found)


def test_distributed_machinery_removed_without_its_replacement():
    src = """
        import torch
        from torch.nn.parallel import DistributedDataParallel as DDP
        import torch.distributed as dist
        dist.init_process_group("gloo")
        model = DDP(torch.nn.Linear(1, 1))
        opt = model.configure_optimizers()
    """
    out = """
        import torch
        model = torch.nn.Linear(1, 1)
        opt = model.configure_optimizers()
    """
    found = messages(src, out)
    assert any("DDP wrapper was removed but no framework object" in m for m in found)
    assert any("`init_process_group` was removed" in m for m in found)
    with_setup = d(out) + "from lightning.fabric import Fabric\nfabric = Fabric()\nmodel, opt = fabric.setup(model, opt)\n"
    assert check(d(src), with_setup, "fabric") == []


def test_a_ddp_attribute_read_on_a_model_no_longer_wrapped():
    src = "from torch.nn.parallel import DistributedDataParallel as DDP\nm = DDP(m)\nx = m.require_backward_grad_sync\n"
    out = "from lightning.fabric import Fabric\nfabric = Fabric()\nm = fabric.setup(m)\nx = m.require_backward_grad_sync\n"
    assert any("require_backward_grad_sync" in p.message for p in check(src, out, "fabric"))
    assigned = "from lightning.fabric import Fabric\nfabric = Fabric()\nm = fabric.setup(m)\nm.require_backward_grad_sync = True\n"
    assert check(src.replace("x = m.require_backward_grad_sync\n", "m.require_backward_grad_sync = True\n"),
                 assigned, "fabric") == []


def test_changed_signatures():
    assert set(changed_signatures("def f(a):\n    pass\nclass C:\n    def __init__(self, x):\n        pass\n",
                                  "def f(fabric, a):\n    pass\nclass C:\n    def __init__(self, fabric, x):\n        pass\n"
                                  )) >= {"f", "C"}


def test_across_files_both_sides_of_a_call_that_no_longer_fits_stay_unchanged():
    trainer_in = "class Trainer:\n    def __init__(self, model):\n        self.model = model\n"
    trainer_out = "class Trainer:\n    def __init__(self, fabric, model):\n        self.model = model\n"
    caller = "import torch\nfrom pkg.trainer import Trainer\nt = Trainer(torch.nn.Linear(1, 1))\n"
    found = across_files({"pkg/trainer.py": (trainer_in, trainer_out), "scripts/run.py": (caller, caller)})
    assert list(found) == ["pkg/trainer.py"]
    assert "scripts/run.py:3" in found["pkg/trainer.py"][0][1]
    fitting = caller.replace("Trainer(", "Trainer(fabric, ")
    assert across_files({"pkg/trainer.py": (trainer_in, trainer_out), "scripts/run.py": (caller, fitting)}) == {}


def test_engine_leaves_a_failing_file_unchanged_with_an_error_per_problem(monkeypatch):
    src = d("""
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"


        def evaluate(model, x):
            return model(x.to(device))


        if __name__ == "__main__":
            model = torch.nn.Linear(2, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            model(torch.ones(2)).sum().backward()
            opt.step()
    """)
    from migrator import selfcheck
    monkeypatch.setattr(selfcheck, "_import_time_order", lambda a, b: [selfcheck.Problem(3, "`x` is broken")])
    r = migrate(src, "fabric")
    assert r.code == src and not r.changed and r.error is None
    errors = [x for x in r.diagnostics if x.code == SELF_CHECK]
    assert errors and all(x.severity == "error" and not x.fixed and x.needs_attention for x in errors)
    assert "`x` is broken" in errors[0].message and "left unchanged" in errors[0].message


def test_cli_run_over_a_package_and_a_caller_in_another_folder(tmp_path):
    """A `Trainer` in a package, called from a script in another folder: the caller is not migrated, so the
    trainer keeps its signature (it is left unchanged, with an error naming the call)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "trainer.py").write_text(d("""
        import torch


        class Trainer:
            def __init__(self, model, optimizer):
                self.model, self.optimizer = model, optimizer

            def step(self, x):
                self.optimizer.zero_grad()
                self.model(x).sum().backward()
                self.optimizer.step()
    """))
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    run = scripts / "run.py"
    run.write_text(d("""
        import torch
        from pkg.trainer import Trainer

        model = torch.nn.Linear(2, 1)
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
        trainer.step(torch.ones(4, 2))
    """))
    before = {p: p.read_text() for p in (pkg / "trainer.py", run)}
    proc = subprocess.run([sys.executable, "-m", "migrator", str(tmp_path), "--target", "fabric"],
                          capture_output=True, text=True)
    after = {p: p.read_text() for p in before}
    added = [line for line in after[pkg / "trainer.py"].splitlines()
             if line not in before[pkg / "trainer.py"].splitlines()]
    # the trainer keeps its signature: at most TODO lines are added (its caller is out of the folder's sight)
    assert all(line.strip().startswith("# TODO(pt-migrate)") for line in added), proc.stderr
    assert "def __init__(self, model, optimizer):" in after[pkg / "trainer.py"]
    assert "Trainer(model, " in after[run]


def test_across_files_through_a_module_imported_from_its_package():
    trainer_in = "def fit(model):\n    pass\n"
    trainer_out = "def fit(fabric, model):\n    pass\n"
    caller = "import torch\nfrom pkg import trainer\ntrainer.fit(torch.nn.Linear(1, 1))\n"
    found = across_files({"pkg/trainer.py": (trainer_in, trainer_out), "run.py": (caller, caller)})
    assert list(found) == ["pkg/trainer.py"] and "run.py:3" in found["pkg/trainer.py"][0][1]
