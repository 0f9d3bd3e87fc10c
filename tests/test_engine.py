"""The engine as a pure function: results, errors, name resolution, non-training files."""
import libcst as cst
import pytest

from migrator import Options, migrate

LOOP = """
for x, y in loader:
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
"""

IMPORT_STYLES = {
    "alias": ("import torch as th\n", "model = th.nn.Linear(2, 1)\nopt = th.optim.SGD(model.parameters(), lr=0.1)\n"
              "loader = th.utils.data.DataLoader(th.utils.data.TensorDataset(th.randn(4, 2), th.randn(4, 1)))\n"),
    "nn_alias": ("import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader, TensorDataset\n",
                 "model = nn.Linear(2, 1)\nopt = torch.optim.Adam(model.parameters())\n"
                 "loader = DataLoader(TensorDataset(torch.randn(4, 2), torch.randn(4, 1)))\n"),
    "from_torch_optim": ("import torch\nfrom torch import optim\nimport torch.utils.data\n",
                         "model = torch.nn.Linear(2, 1)\nopt = optim.SGD(model.parameters(), lr=0.1)\n"
                         "loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2), torch.randn(4, 1)))\n"),
    "from_optim_class": ("import torch\nfrom torch.optim import AdamW\nfrom torch.utils.data import DataLoader as DL\n",
                         "model = torch.nn.Linear(2, 1)\nopt = AdamW(model.parameters())\n"
                         "loader = DL(torch.utils.data.TensorDataset(torch.randn(4, 2), torch.randn(4, 1)))\n"),
}


@pytest.mark.parametrize("style", sorted(IMPORT_STYLES))
@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_names_resolve_through_imports(style, target):
    imports, setup = IMPORT_STYLES[style]
    result = migrate(imports + setup + LOOP, target)
    fw = "fabric" if target == "fabric" else "accelerator"
    assert result.error is None
    call = "setup" if target == "fabric" else "prepare"
    assert f"model, opt = {fw}.{call}(model, opt)" in result.code
    loader_call = "setup_dataloaders" if target == "fabric" else "prepare"
    assert f"loader = {fw}.{loader_call}(loader)" in result.code
    assert f"{fw}.backward(loss)" in result.code


def test_parse_error_is_a_result_not_an_exception():
    src = "import torch\ndef f(:\n    loss.backward()\n"
    result = migrate(src, "fabric")
    assert result.error and result.code == src and not result.changed
    d = result.diagnostics[0]
    assert d.code == "PTM001" and d.line == 2 and d.severity == "error"


def test_unknown_target_is_an_error():
    assert migrate("x = 1\n", "keras").error


@pytest.mark.parametrize("src", [
    "",
    "# only a comment\n",
    "import torch\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        return x.cuda()\n",
    "import numpy as np\nprint(np.zeros(3))\n",
    "import torch\nx = torch.randn(3, device='cuda')\nprint(x.to('cpu'))\n",
])
@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_non_training_files_are_byte_identical(src, target):
    result = migrate(src, target)
    assert result.code == src and not result.changed and not result.diagnostics


def test_diagnostics_are_structured_and_name_input_lines():
    src = open("examples/train.py").read()
    result = migrate(src, "fabric")
    lines = src.splitlines()
    backward = [d for d in result.diagnostics if d.code == "PTM107"][0]
    assert "loss.backward()" in lines[backward.line - 1]
    assert backward.fixed and backward.severity == "info"
    # PTM112 leaves the test loader unsharded, as it is only evaluated (a fix, placed on the evaluation loop) ...
    metric = [d for d in result.diagnostics if d.code == "PTM112"][0]
    assert metric.fixed and "for data, target in loader:" in lines[metric.line - 1]
    # ... and reports with a TODO where it cannot: on Accelerate, a sum it cannot tell how to gather (here no number
    # literal starts it), placed on the evaluation loop
    src = src.replace("    correct = 0\n", "    correct = torch.zeros(())\n")
    result = migrate(src, "accelerate")
    lines = src.splitlines()
    todo = [d for d in result.diagnostics if d.needs_attention][0]
    assert todo.code == "PTM112" and "for data, target in loader:" in lines[todo.line - 1]
    assert "# TODO(pt-migrate) PTM112:" in result.code


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_output_parses_and_second_run_changes_nothing(target):
    src = open("examples/train.py").read()
    first = migrate(src, target)
    cst.parse_module(first.code)
    second = migrate(first.code, target)
    assert second.code == first.code and not second.changed
    assert not [d for d in second.diagnostics if d.fixed]


def test_options_fill_the_constructors():
    src = open("examples/train.py").read()
    fab = migrate(src, "fabric", Options(accelerator="cpu", devices="2", strategy="ddp", precision="bf16-mixed", num_nodes=2)).code
    assert 'Fabric(accelerator="cpu", devices=2, strategy="ddp", num_nodes=2, precision="bf16-mixed")' in fab
    assert "fabric.launch()" in fab
    acc = migrate(src, "accelerate", Options(accelerator="cpu", precision="bf16-mixed")).code
    assert 'Accelerator(cpu=True, mixed_precision="bf16")' in acc
    run = migrate(src, "fabric", Options(launcher="fabric-run")).code
    assert "fabric = Fabric()" in run and "fabric.launch()" not in run


def test_no_options_follow_torchrun_environment():
    fab = migrate(open("examples/train.py").read(), "fabric").code
    assert 'devices=os.environ.get("LOCAL_WORLD_SIZE", "auto")' in fab
    assert "import os" in fab


NOTE_ONLY = '''import torch


def main(loader, k=4):
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = 0
    for x in loader:
        loss = model(x).sum() / k
        loss.backward()
        step += 1
        if step % k == 0:
            opt.step()
            opt.zero_grad()
'''


def test_a_note_is_placed_and_needs_no_attention():
    """PTM139 leaves accumulation it cannot prove as written: correct, only slower, so a note (info), no TODO."""
    from migrator.report import github_annotations
    from migrator.runner import FileOutcome

    result = migrate(NOTE_ONLY, "fabric")
    notes = [d for d in result.diagnostics if d.code == "PTM139"]
    assert len(notes) == 1 and notes[0].severity == "info" and not notes[0].fixed
    assert (notes[0].line, notes[0].column) == (8, 5)  # the `for` loop
    # PTM114 marks the loader handed in from outside the file (its batches are not set up, so they stay on the CPU)
    assert not notes[0].needs_attention and not [d for d in result.diagnostics
                                                 if d.needs_attention and d.code != "PTM114"]
    assert "TODO(pt-migrate) PTM139" not in result.code
    assert "::notice file=train.py,line=8" in github_annotations([FileOutcome("train.py", result)])


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_matmul_precision_is_opt_in_and_idempotent(target):
    source = "import torch\n" + IMPORT_STYLES["nn_alias"][1].replace("nn.", "torch.nn.").replace(
        "DataLoader(TensorDataset", "torch.utils.data.DataLoader(torch.utils.data.TensorDataset") + LOOP
    assert "set_float32_matmul_precision" not in migrate(source, target).code
    options = Options(matmul_precision="high")
    once = migrate(source, target, options)
    assert once.code.count('torch.set_float32_matmul_precision("high")') == 1
    fw = "fabric" if target == "fabric" else "accelerator"
    lines = once.code.splitlines()
    created = next(i for i, l in enumerate(lines) if l.startswith(f"{fw} = "))
    assert lines.index('torch.set_float32_matmul_precision("high")') > created
    assert migrate(once.code, target, options).code == once.code


ON_ACCELERATE = """import torch
from accelerate import Accelerator


def step(accelerator, model, opt, x, y):
    loss = ((model(x) - y) ** 2).mean()
    accelerator.backward(loss)
    opt.step()


def main():
    accelerator = Accelerator()
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt = accelerator.prepare(model, opt)
    x = torch.randn(4, 2)
    model(x).sum().backward()  # a plain backward too: still not rewritten
    step(accelerator, model, opt, x, torch.randn(4, 1))
"""

ON_FABRIC = """import torch
import lightning as L

fabric = L.Fabric(accelerator="cpu")
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model(torch.randn(4, 2)).sum().backward()
opt.step()
"""


@pytest.mark.parametrize("src,target,used", [(ON_ACCELERATE, "fabric", "Accelerate"),
                                             (ON_FABRIC, "accelerate", "Lightning Fabric")])
def test_a_script_on_the_other_framework_is_left_unchanged_with_a_note(src, target, used):
    result = migrate(src, target)
    assert result.code == src and not result.changed and result.error is None
    [d] = result.diagnostics
    assert d.code == "PTM005" and d.severity == "info" and not d.needs_attention and f"already uses {used}" in d.message
    assert (d.line, d.column) == ((7, 5) if target == "fabric" else (4, 10))


HAND_WRITTEN_ACCELERATE = """import torch
from accelerate import Accelerator

accelerator = Accelerator()
reference = torch.nn.Linear(2, 1).to(accelerator.device)  # deliberately not prepared
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
model, opt = accelerator.prepare(model, opt)
x = torch.randn(4, 2, device=accelerator.device)
accelerator.backward(model(x).sum())
reference(x).sum().backward()
opt.step()
ref_opt.step()
"""


def test_a_script_already_on_the_target_framework_is_left_alone():
    result = migrate(HAND_WRITTEN_ACCELERATE, "accelerate")
    assert result.code == HAND_WRITTEN_ACCELERATE and not result.diagnostics


PARTLY_ON_ACCELERATE = """import torch
from accelerate import Accelerator


def step(accelerator, model, x):
    loss = model(x).sum()
    loss.backward()


def main():
    accelerator = Accelerator()
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step(accelerator, model, torch.randn(4, 2))
    opt.step()
"""


def test_a_helper_that_already_takes_the_framework_object_is_not_given_it_twice():
    result = migrate(PARTLY_ON_ACCELERATE, "accelerate")
    assert "def step(accelerator, model, x):" in result.code
    assert "step(accelerator, model, torch.randn(4, 2))" in result.code
    assert "accelerator.backward(loss)" in result.code
    compile(result.code, "partly.py", "exec")


DDP_LEFTOVERS = """import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from accelerate import Accelerator

accelerator = Accelerator()
model = DDP(torch.nn.Linear(2, 1))
reference = DDP(torch.nn.Linear(2, 1))  # compared with the prepared model, never prepared
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model, opt = accelerator.prepare(model, opt)
accelerator.backward(model(torch.randn(4, 2)).sum())
opt.step()
"""


def test_on_a_framework_script_only_the_ddp_wrappers_of_set_up_models_go():
    result = migrate(DDP_LEFTOVERS, "accelerate")
    assert "model = torch.nn.Linear(2, 1)\n" in result.code
    assert "reference = DDP(torch.nn.Linear(2, 1))" in result.code
    [note] = [d for d in result.diagnostics if not d.fixed]
    assert note.code == "PTM131" and note.line == 7 and not note.needs_attention


LIBRARY_HELPER = """import torch


def measure(model, forward_fn, loss_fn):
    loss_fn(forward_fn()).backward()
    return sum(p.grad.abs().sum() for p in model.parameters())
"""


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_a_helper_module_that_sets_nothing_up_keeps_its_signature(target):
    """No optimizer, no framework object, no sibling that hands it one, no loop: it trains nothing, so it stays
    byte for byte, without a TODO (issue #17: lightning's measure_flops)."""
    result = migrate(LIBRARY_HELPER, target)
    assert not result.changed and result.code == LIBRARY_HELPER
    assert result.diagnostics == []


def test_a_device_chain_of_strings_stays_a_string():
    """nanoGPT's `device = "cpu"; if cuda: device = "cuda" elif mps: device = "mps"`, then `device.startswith(...)`:
    the chain becomes `str(fabric.device)` as the plain assignment does (a torch.device has no startswith)."""
    src = ('import torch\n\ndef main():\n    device = "cpu"\n    if torch.cuda.is_available():\n'
           '        device = "cuda"\n    elif torch.backends.mps.is_available():\n        device = "mps"\n'
           '    device_type = "cuda" if device.startswith("cuda") else "cpu"\n    model = torch.nn.Linear(2, 1).to(device)\n'
           '    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(4, 2, device=device)).sum().backward()\n'
           '    opt.step()\n\nif __name__ == "__main__":\n    main()\n')
    out = migrate(src, "fabric").code
    assert "device = fabric.device\n" not in out and "str(fabric.device)" in out, out
    ns = {}
    exec(compile(out.replace("fabric.launch()", "pass"), "t.py", "exec"), ns)  # it defines main; runs nothing
