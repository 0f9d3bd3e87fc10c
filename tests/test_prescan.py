"""The pre-scan may let a non-script through, never stop a training script."""
from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper

from migrator.analysis import analyze
from migrator.options import Options
from migrator.prescan import code_only, constructs_optimizer, has_backward_call, may_be_training_script
from migrator.runner import _maybe_entry

ROOT = Path(__file__).resolve().parent.parent
WHOLE_SCRIPTS = sorted(ROOT.glob("fixtures/*/before/*.py")) + [ROOT / "examples" / "train.py"]


def _is_training(source: str, targets=("fabric", "accelerate")) -> bool:
    module = cst.parse_module(source)
    return any(analyze(MetadataWrapper(module), t).is_training for t in targets)


@pytest.mark.parametrize("path", WHOLE_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_never_rejects_a_whole_script_fixture(path):
    text = path.read_text(encoding="utf-8")
    kept = may_be_training_script(text) or _maybe_entry(str(path), text)
    # the noop_* fixtures are no training scripts: letting them through is allowed, stopping a script is not; nor
    # is a helper without a golden (left as it is, e.g. load_before_prepare_helper's checkpoints.py, no torch in it)
    case = path.parent.parent
    helper_left_alone = path.parent.name == "before" and not any((case / t / path.name).exists()
                                                                  for t in ("fabric", "accelerate"))
    if _is_training(text) or not (path.parts[-3].startswith("noop") or helper_left_alone):
        assert kept, f"the pre-scan rejects {path}"


def test_keeps_the_entry_script_whose_loop_lives_in_a_sibling():
    entry = ROOT / "fixtures" / "trainer_module" / "before" / "train.py"
    text = entry.read_text(encoding="utf-8")
    assert _maybe_entry(str(entry), text)


def test_keeps_a_helper_module_imported_by_a_sibling(tmp_path):
    (tmp_path / "train.py").write_text("import torch\nfrom helpers import log\nlog('x')\n")
    helper = tmp_path / "helpers.py"
    helper.write_text("import torch\n\ndef log(msg):\n    print(msg)\n")
    assert _maybe_entry(str(helper), helper.read_text())


PLAIN_LIBRARY = '''\
"""Layers. Example::

    >>> model = Net()
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> loss = model(x).sum()
    >>> loss.backward()
    >>> optimizer.step()
"""
import torch
from torch import nn


class Net(nn.Module):
    def forward(self, x):  # call .backward() on the output, then optimizer.step()
        return x * 2

    def extra_repr(self):
        return "loss.backward() and .step( appear in strings only"
'''


def test_rejects_a_plain_library_file():
    assert not may_be_training_script(PLAIN_LIBRARY)
    assert not may_be_training_script("import numpy\n\ndef f(x):\n    return x.backward()\n")  # no torch
    assert not may_be_training_script("import torch\n\ndef f(sched):\n    sched.step()\n")  # no optimizer


@pytest.mark.parametrize("source", [
    # lightning's measure_flops: a utility's lone backward, no step, no loop (issue #17)
    "import torch\n\ndef measure_flops(model, forward_fn, loss_fn):\n    loss_fn(forward_fn()).backward()\n",
    "import torch\nloss = model(x).sum()\nloss.backward()\nprint(model.weight.grad)\n",
    "import torch\n\ndef grad(loss):\n    loss.backward()\n\ngrad(l)\n",  # called once, not from a loop
])
def test_rejects_a_lone_backward(source):
    assert not may_be_training_script(source)


# a backward trains with a step call or in a loop (issue #17): the odd spellings below each come with one
@pytest.mark.parametrize("source", [
    "import torch\nloss = torch.ones(1, requires_grad=True).sum()\nloss.backward()\nsched.step()\n",
    "import torch\nfor a, b in pairs:\n    (a + b).backward(retain_graph=True)\n",
    "import torch\nscaler.scale(loss).backward()\nscaler.step(opt)\n",
    "import torch\nwhile True:\n    loss . backward (\n    )\n",
    "import torch\n\ndef step_fn(loss):\n    loss.backward()\n\nfor b in data:\n    step_fn(b)\n",
    "import torch\nopt = torch.optim.AdamW(m.parameters())\nopt.step()\n",
    "import torch\nfrom torch import optim\nopt = optim.SGD(m.parameters(), lr=0.1)\nopt.step()\n",
    "import torch\nfrom torch.optim import (\n    Adam as A,\n)\nopt = A(m.parameters())\nopt.step()\n",
    "import torch\nimport torch.optim as O\nopt = O.Adam(m.parameters())\nopt.step()\n",
    "import torch\ns = 'it''s'  # a quote in a comment: '\nloss.backward()\nopt.step()\n",
    "import torch\nx = f'{a!r}'\nloss.backward()\nopt.step()\n",
])
def test_keeps_code_that_trains(source):
    assert may_be_training_script(source)


def test_external_functions_always_pass():
    assert may_be_training_script("x = 1\n", Options(external_fw_functions=frozenset({"trainer.train"})))


def test_torch_autograd_backward_is_not_a_backward_call():
    assert not has_backward_call(code_only("import torch\ntorch.autograd.backward(t)\n"))
    assert has_backward_call(code_only("import torch\nmy_autograd.backward(t)\n"))
    assert constructs_optimizer("from torch.optim import SGD\nopt = SGD(p)\n")
    assert not constructs_optimizer("from torch.optim import lr_scheduler\n")


@pytest.mark.parametrize("path", sorted(ROOT.glob("fixtures/*/*/*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_never_rejects_what_the_analysis_calls_training(path):
    """Migrated outputs included: the analysis of their own target must agree (`fabric.backward` is no plain one)."""
    text = path.read_text(encoding="utf-8")
    targets = (path.parts[-2],) if path.parts[-2] in ("fabric", "accelerate") else ("fabric", "accelerate")
    try:
        training = _is_training(text, targets)
    except Exception:
        pytest.skip("not parseable")
    if training:
        assert may_be_training_script(text), f"the pre-scan rejects {path}, which the analysis calls training"


def test_a_backslash_newline_in_a_string_does_not_hide_the_code_after_it():
    source = ('import torch\nx = f"""\\\nline {a}\n    """\ns = "a\\\nb"\n\n'
              'def run(loss):\n    loss.backward()\n    opt.step()\n')
    assert "loss.backward()" in code_only(source)
    assert may_be_training_script(source)


def test_a_library_backward_wrapper_is_no_training_script():
    wrapper = ("import torch\n\n\nclass Precision:\n    def backward(self, tensor, *args, **kwargs):\n"
               "        if self.scaler is not None:\n            tensor = self.scaler.scale(tensor)\n"
               "        tensor.backward(*args, **kwargs)\n")
    assert not may_be_training_script(wrapper)
    assert may_be_training_script(wrapper + "\n\ndef train(loss):\n    loss.backward()\n    opt.step()\n")


def test_a_framework_backward_is_no_plain_backward():
    assert not may_be_training_script("import torch\naccelerator.backward(loss)\nself.fabric.backward(loss)\n"
                                      "opt.step()\n")
    assert may_be_training_script("import torch\nfabric = Fabric()\nfor b in d:\n    loss.backward()\n")  # half


def test_a_package_module_with_relative_imports_imports_no_sibling_by_absolute_name(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "logging.py").write_text("import torch\n")
    state = tmp_path / "state.py"
    state.write_text("import logging\nimport torch\nfrom .utils import x\n")
    assert not _maybe_entry(str(state), state.read_text())
    script = tmp_path / "run.py"
    script.write_text("import logging\nimport torch\n")  # a script: `import logging` loads the sibling
    assert _maybe_entry(str(script), script.read_text())


def test_a_package_module_importing_its_own_package_imports_no_sibling(tmp_path):
    pkg = tmp_path / "mypkg" / "env"
    pkg.mkdir(parents=True)
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "mypkg.py").write_text("import torch\n")
    (pkg / "warnings.py").write_text("import torch\n")
    mod = pkg / "kube.py"
    mod.write_text("import warnings\nimport torch\nfrom mypkg.env.base import Base\n")
    assert not _maybe_entry(str(mod), mod.read_text())
