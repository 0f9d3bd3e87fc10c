"""migrator.matching walks the tree itself (iter_nodes, findall): the same nodes in the same order as libcst's
own visit, on every fixture script and on code with the shapes whose visit is conditional (f-string format specs,
`from x import *`, decorators, type parameters)."""
from pathlib import Path

import libcst as cst
import pytest

from migrator import matching as m

REPO = Path(__file__).resolve().parent.parent
SHAPES = '''
from os import *
from . import (a, b as c)
@decorator(1)
class A(B, metaclass=M):
    x: int = 1
    async def f(self, *args, y=2, **kw) -> "A":
        async with a as b, c:
            async for i in range(3):
                yield f"{i!r:>{width}} {i=} {x:.{n}f}" if i else lambda q, *, r=1: q[1:2, ::3]
        return [z async for z in g() if z] or {k: v for k, v in d.items()} or {*s} or (*t,)
try:
    pass
except* ValueError as e:
    del e
match p:
    case {"k": [1, *rest]} | Point(x=0) if rest:
        global g; q = [print(x) for x in rest]
'''


class _Order(cst.CSTVisitor):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_visit(self, node):
        self.seen.append(node)
        return True


def _sources():
    yield "shapes", SHAPES
    for path in sorted(REPO.glob("fixtures/*/before/*.py")):
        yield str(path.relative_to(REPO)), path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name,source", list(_sources()), ids=lambda v: v if "/" in v or v == "shapes" else "")
def test_walk_is_libcst_visit_order(name, source):
    tree = cst.parse_module(source)
    libcst_order = _Order()
    tree.visit(libcst_order)
    assert [id(n) for n in m.iter_nodes(tree)] == [id(n) for n in libcst_order.seen]
    calls = [n for n in libcst_order.seen if isinstance(n, cst.Call)]
    assert m.findall(tree, m.Call()) == calls
    names = [n for n in libcst_order.seen if isinstance(n, cst.Name) and n.value in ("print", "i")]
    assert m.findall(tree, m.Name("print") | m.Name("i")) == names
    statements = [n for n in libcst_order.seen if isinstance(n, cst.BaseCompoundStatement)]
    assert m.findall(tree, m.BaseCompoundStatement()) == statements
