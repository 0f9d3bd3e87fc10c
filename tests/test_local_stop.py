"""PTM146 local-stop: a loop stopped on a rank's own loss stops on the mean over ranks, or gets a TODO."""
import pytest

from migrator import Options, migrate

HEAD = ("import torch\n\n\ndef main(loader, tol):\n    model = torch.nn.Linear(4, 1)\n"
        "    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n    step = 0\n    running = 0.0\n"
        "    for x, y in loader:\n        loss = (model(x) - y).pow(2).mean()\n        loss.backward()\n"
        "        opt.step()\n        step += 1\n")


def _run(body: str, target: str):
    source = HEAD + body
    result = migrate(source, target, Options(select=frozenset({"PTM146"})))
    assert result.error is None
    again = migrate(result.code, target, Options(select=frozenset({"PTM146"})))
    assert again.code == result.code, "a second run must change nothing"
    return result


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_stop_on_the_loss_reads_the_mean_over_ranks(target):
    r = _run("        if loss.item() < tol:\n            break\n", target)
    call = 'fabric.all_reduce(loss.detach().clone(), reduce_op="mean")' if target == "fabric" \
        else 'accelerator.reduce(loss.detach(), reduction="mean")'
    assert f"        loss_mean = {call}\n        if loss_mean.item() < tol:\n            break\n" in r.code
    assert not [d for d in r.diagnostics if not d.fixed]


def test_counter_and_setting_tests_are_left_alone():
    body = "        if step >= 100:\n            break\n        if step % 10 == 0:\n            return step\n"
    r = _run(body, "fabric")
    assert r.code == HEAD + body and not r.diagnostics


def test_value_computed_from_the_loss_gets_a_todo():
    r = _run("        running = 0.9 * running + 0.1 * loss.item()\n        if running < tol:\n            break\n", "fabric")
    todo = [d for d in r.diagnostics if d.code == "PTM146" and not d.fixed]
    assert todo and "`running`" in todo[0].message and "different steps" in todo[0].message
    assert "# TODO(pt-migrate) PTM146:" in r.code and "loss_mean" not in r.code


def test_stop_after_an_exit_some_ranks_may_take_gets_a_todo():
    r = _run("        if torch.isnan(loss):\n            continue\n        if loss.item() < tol:\n            break\n",
             "accelerate")
    assert "loss_mean" not in r.code
    assert [d for d in r.diagnostics if d.code == "PTM146" and not d.fixed]


def test_stop_on_a_reduced_value_is_left_alone():
    body = ('        avg = fabric.all_reduce(loss.detach(), reduce_op="mean")\n        if avg < tol:\n'
            '            break\n')
    r = _run(body, "fabric")
    assert r.code == HEAD + body
