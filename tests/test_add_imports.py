"""migrator.add_imports gives what libcst's AddImportsVisitor gives, for the imports the rules ask for."""
import libcst as cst
import pytest
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor

from migrator.add_imports import ImportRequests, add_imports

MODULES = {
    "empty": "",
    "code only": "x = 1\n",
    "docstring": '"""Doc."""\nimport torch\n\nx = 1\n',
    "docstring only": '"""Doc."""\n',
    "strict flag": "__strict__ = True\nimport torch\nx = 1\n",
    "future": "from __future__ import annotations\nimport torch\n\n\ndef f():\n    pass\n",
    "comment before code": "import torch\n# the model\nmodel = 1\n",
    "blank before code": "import torch\n\nmodel = 1\n",
    "no blank before code": "import torch\nmodel = 1\n",
    "already there": "import os\nimport torch\nfrom lightning.fabric import Fabric\nx = 1\n",
    "joins a from-import": "import torch\nfrom accelerate.utils import gather\nx = 1\n",
    "star": "from accelerate.utils import *\nx = 1\n",
    "aliased is not the same": "import os as o\nfrom accelerate import Accelerator as A\nx = 1\n",
    "import after code": "x = 1\nimport os\n",
    "two names one line": "import os, sys\nx = 1\n",
    "semicolons": "import os; import sys\nx = 1\n",
    "conditional import": "try:\n    import torch\nexcept ImportError:\n    torch = None\nx = 1\n",
    "relative": "from . import utils\nfrom .accelerate import thing\nx = 1\n",
    "crlf": "import torch\r\n\r\nx = 1\r\n",
}
REQUESTS = {
    "fabric": [("lightning.fabric", "Fabric"), ("os", None)],
    "accelerate": [("accelerate", "Accelerator"), ("os", None), ("torch", None), ("accelerate.utils", "set_seed"),
                   ("accelerate.utils", "broadcast")],
    "one module": [("os", None)],
}


@pytest.mark.parametrize("requests", sorted(REQUESTS))
@pytest.mark.parametrize("name", sorted(MODULES))
def test_same_as_libcst(name, requests):
    module = cst.parse_module(MODULES[name])
    ctx = CodemodContext()
    ours = ImportRequests()
    for mod, obj in REQUESTS[requests]:
        AddImportsVisitor.add_needed_import(ctx, mod, obj)
        ours.add(mod, obj)
    expected = AddImportsVisitor(ctx).transform_module(module).code
    assert add_imports(module, ours).code == expected
