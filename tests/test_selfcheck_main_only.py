"""The self-check's main-process-only names (migrator/main_only.py, PTM006, issue #13): a name the migration binds
only under a main-process guard and every rank reads is rejected; the user's own guards, reads under an equivalent
guard, after `if not main: return`, and in helpers only called under the guard are not."""
import dataclasses
import textwrap

import pytest

from migrator import engine, migrate
from migrator.main_only import main_only_reads
from migrator.selfcheck import SELF_CHECK, check


def d(s: str) -> str:
    return textwrap.dedent(s).lstrip()


def found(src: str, out: str):
    return main_only_reads(d(src), d(out))


# -- broken outputs, one per style ------------------------------------------------------------------------------

def test_module_level_writer_read_in_a_function_every_rank_calls():
    src = """
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter("runs/x")

        def train(step):
            writer.add_scalar("loss", 1.0, step)

        for step in range(3):
            train(step)
    """
    out = """
        from torch.utils.tensorboard import SummaryWriter
        if fabric.is_global_zero:
            writer = SummaryWriter("runs/x")

        def train(step):
            writer.add_scalar("loss", 1.0, step)

        for step in range(3):
            train(step)
    """
    (line, at, message), = found(src, out)
    assert line == 6 and at == 2 and message.startswith("`writer` would be bound on the main process only")
    assert "line 2 guards it" in message and "(line 6 of the migrated code)" in message


def test_function_local_read_after_the_guard():
    src = """
        def main():
            log = open("log.csv", "w")
            for i in range(3):
                log.write(f"{i}\\n")
    """
    out = """
        def main():
            if accelerator.is_main_process:
                log = open("log.csv", "w")
            for i in range(3):
                log.write(f"{i}\\n")
    """
    assert [line for line, _, _ in found(src, out)] == [5]


def test_method_local_with_a_global_rank_test():
    src = """
        class Trainer:
            def fit(self, loader):
                history = []
                for batch in loader:
                    history.append(self.step(batch))
                return history
    """
    out = """
        class Trainer:
            def fit(self, loader):
                if self.fabric.global_rank == 0:
                    history = []
                for batch in loader:
                    history.append(self.step(batch))
                return history
    """
    assert [line for line, _, _ in found(src, out)] == [6]


def test_guard_written_with_the_inputs_own_rank_variable():
    src = """
        def worker(rank, world_size):
            best = evaluate()
            print(rank, best)
    """
    out = """
        def worker(rank, world_size):
            if rank == 0:
                best = evaluate()
            print(rank, best)
    """
    assert [line for line, _, _ in found(src, out)] == [4]


def test_a_with_block_guarded_whole_whose_handle_is_read_after():
    """What PTM151 / PTM136 wrote at 977ba48 for a `with open(...) as f:` block that only writes (or only
    torch.saves) when the script reads `f` after the block: the self-check refuses it."""
    src = """
        import json

        def main(metrics):
            with open("metrics.json", "w") as f:
                json.dump(metrics, f)
            print(f"wrote {f.name}")

        main({})
    """
    out = """
        import json

        def main(metrics):
            if fabric.is_global_zero:
                with open("metrics.json", "w") as f:
                    json.dump(metrics, f)
            fabric.print(f"wrote {f.name}")

        main({})
    """
    assert [(line, at) for line, at, _ in found(src, out)] == [(7, 4)]


@pytest.mark.parametrize("guard", ["args.local_rank in [-1, 0]", "0 == rank", "not fabric.global_rank",
                                   "fabric.is_global_zero and epoch % 10 == 0"])
def test_other_spellings_of_a_main_only_test(guard):
    src = "def f(args, rank, epoch):\n    x = 1\n    print(x)\n"
    out = f"def f(args, rank, epoch):\n    if {guard}:\n        x = 1\n    print(x)\n"
    assert [line for line, _, _ in main_only_reads(src, out)] == [4]


def test_else_of_a_test_for_the_other_ranks_and_an_import():
    src = "import wandb\nwandb.log({})\n"
    out = "if fabric.global_rank != 0:\n    pass\nelse:\n    import wandb\nwandb.log({})\n"
    assert [line for line, _, _ in main_only_reads(src, out)] == [5]


# -- what must not be reported ------------------------------------------------------------------------------------

@pytest.mark.parametrize("guard", ["rank == 0", "args.gpu == 0", "is_master", "dist.get_rank() == 0"])
def test_the_users_own_guard_is_not_ours(guard):
    src = f"""
        def main(rank, args):
            if {guard}:
                writer = SummaryWriter()
            writer.flush()
    """
    out = src.replace(guard, "fabric.is_global_zero")
    assert found(src, out) == []


@pytest.mark.parametrize("out", [
    # the read under the same or an equivalent guard
    """
    def main():
        if fabric.is_global_zero:
            writer = SummaryWriter()
        if fabric.global_rank == 0:
            writer.flush()
    """,
    # after `if not main: return`
    """
    def main():
        if fabric.is_global_zero:
            writer = SummaryWriter()
        if not fabric.is_global_zero:
            return
        writer.flush()
    """,
    # `main and ...`, and a conditional expression
    """
    def main():
        if fabric.is_global_zero:
            writer = SummaryWriter()
        fabric.is_global_zero and writer.flush()
        x = writer.flush() if fabric.is_global_zero else None
    """,
    # bound on every rank too
    """
    def main():
        writer = None
        if fabric.is_global_zero:
            writer = SummaryWriter()
        writer.flush()
    """,
    # main_process_first runs its body on every rank
    """
    def main():
        with accelerator.main_process_first():
            writer = SummaryWriter()
        writer.flush()
    """,
    # the script expects the name may be missing
    """
    def main():
        if fabric.is_global_zero:
            writer = SummaryWriter()
        try:
            writer.flush()
        except NameError:
            pass
    """,
])
def test_guarded_reads_are_fine(out):
    src = """
        def main():
            writer = SummaryWriter()
            writer.flush()
    """
    assert found(src, out) == []


def test_a_helper_only_called_under_the_guard():
    src = """
        writer = SummaryWriter()

        def log(v):
            writer.add_scalar("v", v)

        def save_samples():
            grid = make_grid()
            grid.save()

        log(1)
        save_samples()
    """
    out = """
        if fabric.is_global_zero:
            writer = SummaryWriter()

        def log(v):
            writer.add_scalar("v", v)

        def save_samples():
            if fabric.is_global_zero:
                grid = make_grid()
            grid.save()

        if fabric.is_global_zero:
            log(1)
            save_samples()
    """
    assert found(src, out) == []


def test_a_rank_zero_only_function_and_a_method_reading_a_global():
    src = """
        writer = SummaryWriter()

        class Logger:
            def log(self, v):
                writer.add_scalar("v", v)
    """
    out = """
        @rank_zero_only
        def make():
            global writer
            writer = SummaryWriter()

        class Logger:
            def log(self, v):
                writer.add_scalar("v", v)
    """
    # the method's callers are not known: prefer missing a case to a false alarm
    assert found(src, out) == []


def test_current_goldens_have_none():
    """Measured at the change: no fixture golden and no rule example binds a name this way (0 of 220 and 70)."""
    from migrator.rules import REGISTRY
    for rule in REGISTRY:
        for example in rule.examples:
            for target in rule.targets:
                out = getattr(example, target)
                if out is not None:
                    assert main_only_reads(example.before, out) == [], (rule.code, target)


# -- through the self-check and the engine ------------------------------------------------------------------------

def test_check_reports_it_and_the_engine_leaves_the_file_unchanged(monkeypatch):
    src = d("""
        import torch
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter("runs/x")
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(3):
            loss = model(torch.randn(8, 4)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            writer.add_scalar("loss", loss.item(), step)
        writer.close()
    """)
    good = migrate(src, "fabric")
    assert good.changed and check(src, good.code, "fabric") == []
    made = 'writer = SummaryWriter("runs/x") if fabric.is_global_zero else None\n'
    assert made in good.code
    broken_made = 'if fabric.is_global_zero:\n    writer = SummaryWriter("runs/x")\n'
    problems = check(src, good.code.replace(made, broken_made), "fabric")
    assert [p.message.split(" ")[0] for p in problems] == ["`writer`"]  # one per name: its first read

    run_rules = engine._run_rules

    def breaking(*args):
        result = run_rules(*args)
        return dataclasses.replace(result, code=result.code.replace(made, broken_made))

    monkeypatch.setattr(engine, "_run_rules", breaking)
    r = migrate(src, "fabric")
    assert r.code == src and not r.changed and r.error is None
    errors = [x for x in r.diagnostics if x.code == SELF_CHECK]
    assert len(errors) == 1 and errors[0].severity == "error" and "`writer`" in errors[0].message
    assert errors[0].line == 4  # the binding the migration moved, in the input
