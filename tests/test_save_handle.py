"""PTM136: `torch.save` through a file handle. A `with open(path, "wb") as f:` that only saves runs whole on the
main process (every rank opening it would truncate the file), and the reload waits before its own `with`."""
import pytest

from migrator import Options, migrate

SRC = ("import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n"
       "    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
       "    model(torch.randn(8, 4)).sum().backward()\n    opt.step()\n"
       "    with open(\"m.pt\", \"wb\") as f:\n{body}"
       "    with open(\"m.pt\", \"rb\") as f:\n        state = torch.load(f)\n")


def _run(body: str, target: str):
    result = migrate(SRC.format(body=body), target, Options(select=frozenset({"PTM136", "PTM151"})))
    assert result.error is None
    again = migrate(result.code, target, Options(select=frozenset({"PTM136", "PTM151"})))
    assert again.code == result.code, "a second run must change nothing"
    return result


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_save_only_block_runs_on_the_main_process_and_the_read_waits_before_its_with(target):
    r = _run("        torch.save(model.state_dict(), f)\n", target)
    flag, wait = ("fabric.is_global_zero", "fabric.barrier()") if target == "fabric" \
        else ("accelerator.is_main_process", "accelerator.wait_for_everyone()")
    assert f"    if {flag}:\n        with open(\"m.pt\", \"wb\") as f:\n" in r.code
    assert f"    {wait}\n    with open(\"m.pt\", \"rb\") as f:\n" in r.code
    assert ("torch.save(" if target == "fabric" else "accelerator.save(") in r.code
    assert "fabric.save(f" not in r.code and not [d for d in r.diagnostics if not d.fixed]


def test_block_that_does_more_than_save_gets_a_todo_not_fabric_save():
    r = _run("        print('saving')\n        torch.save(model.state_dict(), f)\n", "fabric")
    assert "fabric.save(f" not in r.code
    assert [d for d in r.diagnostics if not d.fixed and d.code in ("PTM136", "PTM151")]
