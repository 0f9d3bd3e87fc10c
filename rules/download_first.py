"""PTM150 download-first: downloads and data preparation run on the main process first, then on the others.

What it does: in the framework scope, a statement that downloads (a dataset built with `download=True`, a model
with `pretrained=True`, `datasets.load_dataset`, `from_pretrained` of transformers and the like,
`torch.hub.load`, `urlretrieve`, `.prepare_data()`), a call of a function or class of the module that does, and
an `if` that prepares a file once (`if not os.path.exists(path): <build it and write it>`, or the write in the
`else` of such a test) and a `try` that reads a file whose `except` builds and writes one go into `with fabric.rank_zero_first(local=False):` /
`with accelerator.main_process_first():`. Consecutive statements share one block. Every rank still builds its
own dataset object: only the order changes.

Why: every process runs the whole script. Without the block all ranks download into the same folder at the same
time and can read each other's half-written files; with it the main process downloads, and the others start once
it is done and find the files in place.

Example: `train_ds = datasets.MNIST("data", train=True, download=True)` ->
`with fabric.rank_zero_first(local=False):` + the same line indented.

Fabric form: `with fabric.rank_zero_first(local=False):` (lightning 2.6: global rank 0 first, the other ranks wait
at a barrier without time limit). `local=False` downloads once per run, right for a data folder that every node
sees (the usual shared file system); with a disk per node, `local=True` makes the first process of each node go
first. Accelerate form: `with accelerator.main_process_first():` (accelerate 1.15: the main process of the whole
run goes first); `accelerator.local_main_process_first()` is the per-node one.

Fix safety: safe. A statement that also calls the framework object or a collective (which would wait forever
inside the block) gets a TODO instead, as does a download at import time, before the framework object exists. A
`torch.save` inside the block stays `torch.save` (PTM136 emits no `fabric.save`, whose barrier would hang there).
Statements already under a rank guard or in such a block are left alone.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set

import libcst as cst
from libcst.metadata import QualifiedNameProvider

from migrator import matching as m
from migrator import side_effects as se
from migrator.analysis import MODULE
from migrator.names import dotted, qualified_names
from migrator.rules.base import Context, Example, Rule, RuleTransformer
from migrator.rules.rank_zero import collectives_in

FIRST_METHODS = ("rank_zero_first", "main_process_first", "local_main_process_first")


def first_block_item(item: cst.WithItem) -> bool:
    """`with fabric.rank_zero_first(...)`, `with accelerator.main_process_first()` (or the local one)."""
    return isinstance(item.item, cst.Call) and isinstance(item.item.func, cst.Attribute) \
        and item.item.func.attr.value in FIRST_METHODS


def first_header(fw: str, target: str) -> str:
    """The line that opens a main-process-first block, as code: `with fabric.rank_zero_first(local=False):` (lightning
    2.6: global rank 0 runs the body, then the others; a barrier without time limit) or
    `with accelerator.main_process_first():` (accelerate 1.15: the main process of the whole run first)."""
    if target == "fabric":
        return f"with {fw}.rank_zero_first(local=False):"
    return f"with {fw}.main_process_first():"


def first_block(fw: str, target: str, stmts: list) -> cst.With:
    """`stmts` (one or more statements of one block) inside that block; the lines above the first stay above it."""
    call = first_header(fw, target)[len("with "):-1]
    body = [stmts[0].with_changes(leading_lines=[])] + list(stmts[1:])
    return cst.With(items=[cst.WithItem(cst.parse_expression(call))], body=cst.IndentedBlock(body=body),
                    leading_lines=stmts[0].leading_lines)


class _Scan(m.Visitor):
    """One walk of the module: per simple statement, its first download and the names it calls; per top-level
    function, whether it downloads, the names it calls and its `if`s that test whether a file exists."""

    def __init__(self, qn):
        super().__init__()
        self.qn = qn
        self.owner: Optional[str] = None  # the top-level function the walk is in
        self.stmt: Optional[cst.SimpleStatementLine] = None
        self.stmt_download: Dict[int, str] = {}
        self.stmt_calls: Dict[int, Set[str]] = {}
        self.direct: Set[str] = set()
        self.caching_trys: Set[str] = set()  # top-level functions with a `try: <read a file>` / `except: <write it>`
        self.calls: Dict[str, Set[str]] = {}
        self.exists_ifs: Dict[str, List[cst.If]] = {}

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if self.owner is None:
            self.owner = node.name.value
            self.calls[self.owner] = set()

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        if self.owner == node.name.value:
            self.owner = None

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        self.stmt = node

    def leave_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        self.stmt = None

    def visit_If(self, node: cst.If) -> None:
        if self.owner is not None and se.exists_test(node.test):
            self.exists_ifs.setdefault(self.owner, []).append(node)

    def visit_Try(self, node: cst.Try) -> None:
        if self.owner is not None and se.caching_try(node, self.qn):
            self.caching_trys.add(self.owner)

    def visit_Call(self, node: cst.Call) -> None:
        name = dotted(node.func)
        what = se.download_call(node, self.qn)
        if self.owner is not None:
            self.calls[self.owner].add(name)
            if what:
                self.direct.add(self.owner)
        if self.stmt is not None:
            self.stmt_calls.setdefault(id(self.stmt), set()).add(name)
            if what:
                self.stmt_download.setdefault(id(self.stmt), what)


def local_downloaders(module: cst.Module, qn, scan: Optional[_Scan] = None) -> Set[str]:
    """Functions and classes of the module that download or prepare a file once, directly or through each other."""
    if scan is None:
        scan = _Scan(qn)
        module.visit(scan)
    found = {name for name in scan.calls
             if name in scan.direct or name in scan.caching_trys
             or any(se.caching_if(i, qn) for i in scan.exists_ifs.get(name, ()))}
    calls = dict(scan.calls)
    for stmt in module.body:
        if isinstance(stmt, cst.ClassDef):  # what constructing it runs: __init__ and the methods it calls
            init = cst.Module(body=_run_by_init(stmt))
            calls[stmt.name.value] = {dotted(c.func) for c in m.findall(init, m.Call())}
            if se.downloads(init, qn) or any(se.caching_if(i, qn) for i in m.findall(init, m.If())):
                found.add(stmt.name.value)
    changed = True
    while changed:
        changed = False
        for name, called in calls.items():
            if name not in found and called & found:
                found.add(name)
                changed = True
    return found


def _run_by_init(cls: cst.ClassDef) -> List[cst.FunctionDef]:
    """A class's `__init__` and the methods it calls through `self.` (directly or through each other): a class
    whose `from_pretrained` downloads does not download when it is constructed."""
    methods = {s.name.value: s for s in cls.body.body if isinstance(s, cst.FunctionDef)}
    todo, seen = ["__init__"], []
    while todo:
        name = todo.pop()
        if name in methods and name not in seen:
            seen.append(name)
            todo += [c.func.attr.value for c in m.findall(methods[name], m.Call())
                     if isinstance(c.func, cst.Attribute) and dotted(c.func.value) == "self"]
    return [methods[n] for n in seen]


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def qn(self, node):
        return qualified_names(self, node)

    def visit_Module(self, node: cst.Module):
        self.scan = _Scan(self.qn)
        node.visit(self.scan)
        self.downloaders = local_downloaders(node, self.qn, self.scan) - self.facts.fw_scopes()
        self.decided: Dict[int, str] = {}  # id(original statement) -> what it downloads, in words
        self.covered: List[int] = []  # ids of the statements whose inside is settled (a block, a guard, a decision)
        return True

    # -- what is already run once: a rank guard, a first-block, a statement decided here
    def _cover(self, node: cst.CSTNode) -> None:
        self.covered.append(id(node))

    def _uncover(self, node: cst.CSTNode) -> None:
        if self.covered and self.covered[-1] == id(node):
            self.covered.pop()

    def visit_With(self, node: cst.With):
        if any(first_block_item(i) for i in node.items):
            self._cover(node)
        return True

    def leave_With(self, original_node, updated_node):
        self._uncover(original_node)
        return updated_node

    def visit_If(self, node: cst.If):
        result = super().visit_If(node)
        if self.covered:
            return result
        if se.rankish(node.test):
            self._cover(node)
        elif se.caching_if(node, self.qn):
            self._decide(node, "prepares a file once (`if` on whether it exists)")
            self._cover(node)
        return result

    def leave_If(self, original_node, updated_node):
        self._uncover(original_node)
        return super().leave_If(original_node, updated_node)

    def visit_Try(self, node: cst.Try):
        if not self.covered and se.caching_try(node, self.qn):
            # the read in `try` would race the write in `except` on another rank (a half-written file)
            self._decide(node, "prepares a file once (`try` reads it, `except` writes it)")
            self._cover(node)
        return True

    def leave_Try(self, original_node, updated_node):
        self._uncover(original_node)
        return updated_node

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine):
        if self.covered:
            return True
        what = self.scan.stmt_download.get(id(node))
        if what is None:
            local = sorted(self.scan.stmt_calls.get(id(node), set()) & self.downloaders)
            what = f"`{local[0]}(...)` (it downloads or prepares data)" if local else None
        if what is not None:
            self._decide(node, what)
        return True

    def _decide(self, node: cst.CSTNode, what: str) -> None:
        if not self.in_fw_scope():
            if self.scope == MODULE and self.facts.setup_scope not in (MODULE, None) and not self._class_depth:
                self.todo(node, f"{what} runs at import time in every process, before `{self.facts.fw}` exists: "
                                f"move it after the framework object, into `{self._header(self.facts.fw)}`")
            return
        hazard = self._hazard(node)
        if hazard:
            self.todo(node, f"{what} should run on the main process first (`{self._header(self.fw)}`), but the "
                            f"statement also calls {hazard}, which every rank must reach together: split it")
            return
        self.decided[id(node)] = what

    def _hazard(self, node: cst.CSTNode) -> Optional[str]:
        """A call in the statement that must not run inside the block: a collective or the framework object's.
        (A `torch.save` may: PTM136 keeps it `torch.save` inside the block.)"""
        found = collectives_in(node, self.qn, self.fw, self.ctx.target)
        if found:
            return f"`{dotted(found[0].func)}`"
        for call in m.findall(node, m.Call()):
            name = dotted(call.func) or ""
            if name.startswith((self.fw + ".", self.facts.fw + ".")):
                return f"`{name}`"
        return None

    def _header(self, fw: str) -> str:
        return first_header(fw, self.ctx.target)

    # -- the blocks: consecutive decided statements share one `with`
    def leave_IndentedBlock(self, original_node, updated_node):
        body = self._regroup(original_node.body, updated_node.body)
        return updated_node if body is None else updated_node.with_changes(body=body)

    def leave_Module(self, original_node, updated_node):
        body = self._regroup(original_node.body, updated_node.body)
        return updated_node if body is None else updated_node.with_changes(body=body)

    def _regroup(self, originals, updated) -> Optional[list]:
        if not self.decided or len(originals) != len(updated) \
                or not any(id(o) in self.decided for o in originals):
            return None
        out: list = []
        run: list = []
        for o, u in list(zip(originals, updated)) + [(None, None)]:
            if o is not None and id(o) in self.decided:
                run.append((o, u))
                continue
            if run:
                out.append(self._block([u2 for _, u2 in run]))
                for o2, _ in run:
                    self.report(o2, f"{self.decided[id(o2)]}: the main process goes first, the other ranks then find "
                                    f"the files ({self._why()})", True)
                run = []
            if o is not None:
                out.append(u)
        return out

    def _why(self) -> str:
        if self.ctx.target == "fabric":
            return (f"`{self._header(self.fw)}` once per run, for a data folder every node sees; "
                    f"`local=True` if each node has its own disk")
        return (f"`{self._header(self.fw)}` once per run; `{self.fw}.local_main_process_first()` if each node has "
                f"its own disk")

    def _block(self, stmts: list) -> cst.With:
        return first_block(self.fw, self.ctx.target, stmts)


class DownloadFirst(Rule):
    code = "PTM150"
    name = "download-first"
    plain_scripts_only = True  # a script on the framework chose its own order
    triggers = ("download", "pretrained", "load_dataset", "hub", "urlretrieve", "prepare_data", "exists", "isfile", "except",
                "isdir", "is_file", "is_dir")
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader\nfrom torchvision import datasets, transforms\n\n\ndef main():\n    train_ds = datasets.MNIST("data", train=True, download=True, transform=transforms.ToTensor())\n    test_ds = datasets.MNIST("data", train=False, download=True, transform=transforms.ToTensor())\n    loader = DataLoader(train_ds, batch_size=64)\n    model = torch.nn.Linear(784, 10)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for x, y in loader:\n        loss = torch.nn.functional.cross_entropy(model(x.flatten(1)), y)\n        loss.backward()\n        optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader\nfrom torchvision import datasets, transforms\n\n\ndef main():\n    with fabric.rank_zero_first(local=False):\n        train_ds = datasets.MNIST("data", train=True, download=True, transform=transforms.ToTensor())\n        test_ds = datasets.MNIST("data", train=False, download=True, transform=transforms.ToTensor())\n    loader = DataLoader(train_ds, batch_size=64)\n    model = torch.nn.Linear(784, 10)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for x, y in loader:\n        loss = torch.nn.functional.cross_entropy(model(x.flatten(1)), y)\n        loss.backward()\n        optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader\nfrom torchvision import datasets, transforms\n\n\ndef main():\n    with accelerator.main_process_first():\n        train_ds = datasets.MNIST("data", train=True, download=True, transform=transforms.ToTensor())\n        test_ds = datasets.MNIST("data", train=False, download=True, transform=transforms.ToTensor())\n    loader = DataLoader(train_ds, batch_size=64)\n    model = torch.nn.Linear(784, 10)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for x, y in loader:\n        loss = torch.nn.functional.cross_entropy(model(x.flatten(1)), y)\n        loss.backward()\n        optimizer.step()\n',
        ),
        Example(
            before='import json\nimport os\nimport torch\n\n\ndef main():\n    if not os.path.exists("vocab.json"):\n        vocab = sorted(set(open("corpus.txt").read()))\n        with open("vocab.json", "w") as f:\n            json.dump(vocab, f)\n    vocab = json.load(open("vocab.json"))\n    model = torch.nn.Embedding(len(vocab), 8)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loss = model(torch.tensor([0, 1])).sum()\n    loss.backward()\n    optimizer.step()\n',
            fabric='import json\nimport os\nimport torch\n\n\ndef main():\n    with fabric.rank_zero_first(local=False):\n        if not os.path.exists("vocab.json"):\n            vocab = sorted(set(open("corpus.txt").read()))\n            with open("vocab.json", "w") as f:\n                json.dump(vocab, f)\n    vocab = json.load(open("vocab.json"))\n    model = torch.nn.Embedding(len(vocab), 8)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loss = model(torch.tensor([0, 1])).sum()\n    loss.backward()\n    optimizer.step()\n',
            accelerate='import json\nimport os\nimport torch\n\n\ndef main():\n    with accelerator.main_process_first():\n        if not os.path.exists("vocab.json"):\n            vocab = sorted(set(open("corpus.txt").read()))\n            with open("vocab.json", "w") as f:\n                json.dump(vocab, f)\n    vocab = json.load(open("vocab.json"))\n    model = torch.nn.Embedding(len(vocab), 8)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loss = model(torch.tensor([0, 1])).sum()\n    loss.backward()\n    optimizer.step()\n',
        ),
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)

    def apply(self, wrapper, ctx):
        if ctx.facts.fw_exists:  # the script binds the object itself: a statement above that binding cannot use it
            return wrapper.module
        return super().apply(wrapper, ctx)
