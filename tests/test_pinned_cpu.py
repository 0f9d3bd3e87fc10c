"""PTM101: a script that pins the CPU keeps its device, and the object is created for CPU processes (issue #13: DETR's
engine summed GPU losses into `torch.zeros(())` accumulators made on the CPU and crashed on a GPU)."""
import pytest

from migrator import Options, migrate

TAIL = ("    model = torch.nn.Linear(4, 1).to(device)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "    total = torch.zeros(())\n    x = torch.randn(8, 4).to(device)\n    loss = model(x).sum()\n"
        "    loss.backward()\n    optimizer.step()\n    total += loss.detach()\n")
CPU_ARG = {"fabric": 'Fabric(accelerator="cpu"', "accelerate": "Accelerator(cpu=True"}


def run(code: str, target: str, options: Options = None):
    result = migrate(code, target, options or Options())
    assert result.error is None, result.error
    again = migrate(result.code, target, options or Options())
    assert again.code == result.code, "a second run must change nothing"
    return result.code


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
@pytest.mark.parametrize("pin", ['torch.device("cpu")', '"cpu"', "torch.device('cpu')"])
def test_a_pinned_cpu_keeps_its_device(target, pin):
    code = run(f"import torch\n\n\ndef main():\n    device = {pin}\n" + TAIL + "\n\nmain()\n", target)
    assert f"device = {pin}" in code and CPU_ARG[target] in code
    assert "the script pins the CPU" in code


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_module_level_pin_above_the_main_guard(target):
    src = ('import torch\n\ndevice = torch.device("cpu")\n\n\ndef main():\n' + TAIL +
           '\n\nif __name__ == "__main__":\n    main()\n')
    code = run(src, target)
    assert 'device = torch.device("cpu")' in code and CPU_ARG[target] in code
    assert "device = fabric.device" not in code and "device = accelerator.device" not in code


@pytest.mark.parametrize("src", [
    # an accelerator is named: the script chose the CPU here, not everywhere
    'import torch\n\n\ndef main():\n    device = torch.device("cpu")\n    use_cuda = False\n' + TAIL,
    'import torch\n\n\ndef main():\n    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")\n' + TAIL,
])
def test_not_a_pin(src):
    code = run(src, "fabric")
    assert CPU_ARG["fabric"] not in code and "device = fabric.device" in code


def test_an_explicit_accelerator_wins():
    src = 'import torch\n\n\ndef main():\n    device = torch.device("cpu")\n' + TAIL
    code = run(src, "fabric", Options(accelerator="cuda"))
    assert 'Fabric(accelerator="cuda"' in code and "device = fabric.device" in code
    assert "# TODO(pt-migrate) PTM101: the script pinned the CPU here; with --accelerator cuda" in code


def test_a_cpu_branch_of_a_choice_is_not_a_pin():
    src = ('import argparse\nimport torch\n\n\ndef main():\n    p = argparse.ArgumentParser()\n'
           '    p.add_argument("--fast", action="store_true")\n    args = p.parse_args()\n    if args.fast:\n'
           '        device = torch.device("cpu")\n    else:\n        device = torch.device("cpu")\n' + TAIL)
    code = run(src, "fabric")
    assert CPU_ARG["fabric"] not in code
