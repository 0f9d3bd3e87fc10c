"""migrator.remove_imports removes what libcst's RemoveImportsVisitor removes, in the shapes it handles."""
import libcst as cst
import pytest
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import RemoveImportsVisitor

from migrator.remove_imports import remove_unused
from migrator.rules.unused_device import unused_import_candidates

MODULES = {
    "aliased unused": "import torch\nimport torch.distributed as dist\n\nx = torch.zeros(1)\n",
    "aliased used": "import torch.distributed as dist\n\ndist.barrier()\n",
    "used in a function": "import torch.distributed as dist\n\n\ndef f():\n    return dist.get_rank()\n",
    "dotted unaliased, torch used": "import torch\nimport torch.distributed\n\nx = torch.zeros(1)\n",
    "dotted unaliased, torch unused": "import torch.distributed\n\nx = 1\n",
    "from import, one of two used": (
        "from torch.nn.parallel import DistributedDataParallel as DDP, DataParallel\n\nm = DataParallel(1)\n"),
    "from import, none used": "from torch.utils.data.distributed import DistributedSampler\n\nx = 1\n",
    "from import, first of two unused": "from torch import GradScaler, autocast\n\nwith autocast('cuda'):\n    pass\n",
    "comment above the import": "import torch\n# process group\nimport torch.distributed as dist\nx = torch.ones(1)\n",
    "exported": "import torch.distributed as dist\n\n__all__ = ['dist']\n",
    "string annotation": "import torch.distributed as dist\n\n\ndef f(g: 'dist.ProcessGroup'):\n    pass\n",
    "stored only": "import torch.distributed as dist\n\ndist = None\n",
    "multiprocessing": "import torch.multiprocessing as mp\nimport os\n\nprint(os.getpid())\n",
    "amp": "from torch.cuda.amp import GradScaler, autocast\n\nscaler = None\n",
    "nothing to remove": "import os\n\nprint(os.sep)\n",
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_same_as_libcst(name):
    module = cst.parse_module(MODULES[name])
    candidates = unused_import_candidates(module)
    ctx = CodemodContext()
    for mod, obj, asname in candidates:
        RemoveImportsVisitor.remove_unused_import(ctx, mod, obj, asname=asname)
    expected = RemoveImportsVisitor(ctx).transform_module(module).code if candidates else module.code
    ours = remove_unused(module, candidates, module.code)
    assert ours is not None
    assert ours.code == expected


def test_shapes_left_to_libcst():
    for source in ("from torch.nn.parallel import (\n    DistributedDataParallel as DDP,  # wrapper\n    DataParallel,\n)\n"
                   "x = DataParallel\n", "import os; import torch.distributed as dist\nx = os\n"):
        module = cst.parse_module(source)
        assert remove_unused(module, unused_import_candidates(module), source) is None
