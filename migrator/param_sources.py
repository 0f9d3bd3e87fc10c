"""Which model an optimizer trains when its parameters reach it through a name, and the DDP unwrap idiom.

Scripts seldom write `AdamW(model.parameters())` only. Real ones build the parameter list first:

    param_dicts = [{"params": [p for n, p in model_without_ddp.named_parameters() if "backbone" not in n]}, ...]
    params = []
    for p in filter(lambda p: p.requires_grad, model.parameters()):
        params.append(p)
    param_groups = optim_factory.add_weight_decay(model_without_ddp, args.weight_decay)

and train a DDP-wrapped `model` while the optimizer is built from its unwrapped view
(`model_without_ddp = model.module`). The set-up call must take the name the loop trains (`model`): setting up
the unwrapped view leaves the loop on a model whose gradients are never averaged.

These functions read one scope (a function's body, or the module's top-level code without its functions and
classes): `owners(scope, name, wrapped)` gives the models whose parameters a name holds; `unwrapped_views(scope)`
gives the names that stand for another model's unwrapped module (`A = M.module`, `A = M` where some assignment of
A is `M.module`, or `M.module if ddp else M`). Both only read the tree; they never guess: a name passed to a
function counts as a model only when it is one of `wrapped` (names the script wraps in DDP / DataParallel or
calls `.parameters()` on).
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Set

import libcst as cst

from migrator.names import dotted

_PARAMETER_METHODS = ("parameters", "named_parameters")
_ADDERS = ("append", "extend", "insert")


def statements(scope: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Every node of the scope, without entering nested functions, classes or lambdas."""
    stack: List[cst.CSTNode] = [scope]
    while stack:
        node = stack.pop()
        yield node
        for child in reversed(node.children):
            if isinstance(child, (cst.FunctionDef, cst.ClassDef, cst.Lambda)) and child is not scope:
                continue
            stack.append(child)


def _parameter_roots(node: cst.CSTNode) -> List[str]:
    """Roots of `X.parameters()` / `X.named_parameters()` anywhere in an expression: `model.encoder.parameters()`
    trains `model`; `self.model.parameters()` trains `self.model`."""
    found: List[str] = []
    for n in statements(node):
        if isinstance(n, cst.Call) and isinstance(n.func, cst.Attribute) and n.func.attr.value in _PARAMETER_METHODS:
            name = dotted(n.func.value)
            if name:
                parts = name.split(".")
                root = ".".join(parts[:2]) if parts[0] == "self" else parts[0]
                if root not in found:
                    found.append(root)
    # `filter(lambda p: p.requires_grad, model.parameters())`: the lambda's own body holds no model
    return found


def passed_models(node: cst.CSTNode, wrapped: Set[str]) -> List[str]:
    """Models handed to a function that builds parameter groups from them: `get_params_groups(student)`."""
    found: List[str] = []
    for n in statements(node):
        if isinstance(n, cst.Call):
            for a in n.args:
                name = dotted(a.value)
                if name in wrapped and name not in found:
                    found.append(name)
    return found


def owners(scope: cst.CSTNode, name: str, wrapped: Set[str]) -> List[str]:
    """The models whose parameters `name` holds in `scope`: from its assignments (`name = [...]`,
    `name = build_groups(model)`), its additions (`name.append(p)` / `name += [...]` in a loop over
    `model.parameters()`). [] when none can be told."""
    found: List[str] = []

    def add(models: List[str]) -> None:
        found.extend(mm for mm in models if mm not in found and mm != name)

    for node in statements(scope):
        value = None
        if isinstance(node, cst.Assign) and any(dotted(t.target) == name for t in node.targets):
            value = node.value
        elif isinstance(node, cst.AugAssign) and dotted(node.target) == name:
            value = node.value
        elif isinstance(node, cst.For) and any(_adds_to(n, name) for n in statements(node.body)):
            add(_parameter_roots(node.iter) or passed_models(node.iter, wrapped))
        elif _adds_to(node, name):
            value = node
        if value is not None:
            add(_parameter_roots(value) or passed_models(value, wrapped))
    return found


def _adds_to(node: cst.CSTNode, name: str) -> bool:
    return (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in _ADDERS
            and dotted(node.func.value) == name) or (isinstance(node, cst.AugAssign) and dotted(node.target) == name)


def _view_of(value: cst.BaseExpression):
    """`M.module` -> (M, True), `M` -> (M, False), `M.module if c else M` -> (M, True),
    `accelerator.unwrap_model(M)` -> (M, True); else None."""
    if isinstance(value, cst.Name):
        return value.value, False
    if isinstance(value, cst.Attribute) and value.attr.value == "module" and isinstance(value.value, cst.Name):
        return value.value.value, True
    if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and \
            value.func.attr.value == "unwrap_model" and len(value.args) == 1 and isinstance(value.args[0].value, cst.Name):
        return value.args[0].value.value, True
    if isinstance(value, cst.IfExp):
        a, b = _view_of(value.body), _view_of(value.orelse)
        if a and b and a[0] == b[0]:
            return a[0], a[1] or b[1]
    return None


def unwrapped_views(scope: cst.CSTNode, handed_over: Set[str] = frozenset()) -> Dict[str, str]:
    """Names bound, at every assignment in the scope, to one model `M` or its unwrapped `M.module`, with at least
    one `M.module` among them: `model_without_ddp` -> `model`. `handed_over`: names the script passes to setup /
    prepare itself (a migrated script, where `model_without_ddp = model` is all that is left): a plain alias of
    one of them counts too."""
    seen: Dict[str, Optional[tuple]] = {}
    for node in statements(scope):
        targets = []
        if isinstance(node, cst.Assign):
            targets = [(t.target, node.value) for t in node.targets]
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign)):
            targets = [(node.target, None)]
        elif isinstance(node, (cst.For, cst.CompFor)):
            targets = [(node.target, None)]
        for target, value in targets:
            if not isinstance(target, cst.Name):
                continue
            view = _view_of(value) if value is not None else None
            old = seen.get(target.value, ())
            if view is None or old is None or (old and old[0] != view[0]):
                seen[target.value] = None
            else:
                seen[target.value] = (view[0], view[1] or bool(old and old[1]))
    return {a: v[0] for a, v in seen.items() if v and (v[1] or v[0] in handed_over) and v[0] != a}
