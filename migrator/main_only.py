"""Self-check (PTM006): a name the migration binds on the main process only but every rank reads (issue #13).

    if fabric.is_global_zero:
        writer = SummaryWriter()      # unguarded in the input
    writer.add_scalar(...)            # every rank: NameError on rank 1, or a stale value

pyflakes cannot see this: the name is bound in the scope, just not on every rank. A name is reported when, in the
output, every binding of it in its scope lies under a main-process-only guard (`if fabric.is_global_zero:`,
`if accelerator.is_main_process:`, `if fabric.global_rank == 0:`, `if rank == 0:`, the `else` of `if rank != 0:`,
the rest of a block after `if not fabric.is_global_zero: return`, a `@rank_zero_only` function) and it is read on a
path every rank runs: in the same scope outside such a guard, or in a function called outside such a guard from
module-level code (or from another such function). `with accelerator.main_process_first():` is no guard: every rank
runs its body. It is not reported when the input already bound the name only under a rank test (the user's own
code): only what the migration moved counts.

Prefer missing a case to a false alarm (a false alarm leaves a good migration undone): reads under any main-only
guard count as guarded (a local one too), reads in methods and lambdas count only in the scope that binds the name,
a function whose every call is under a guard does not run on every rank, and a read inside `try:` with an
`except NameError` (or bare / Exception) handler expects the name may be missing. Scopes and uses come from libcst's
ScopeProvider, the guards around a node from ParentNodeProvider.

Cost: a lexical pass over the `ast` trees the self-check parsed anyway picks the (scope, name) pairs that could be
reported (bound only inside main-only branches, read outside one, not the input's own guard); only when there is
one do both texts go through libcst (0 of the fixtures, rule examples and ecosystem entries did when this was
written; the scope analysis costs 0.1-0.3 s on a 500-line script).
"""
from __future__ import annotations

import ast
from typing import Dict, Iterable, List, Optional, Set, Tuple

import libcst as cst
from libcst.metadata import (FunctionScope, GlobalScope, MetadataWrapper, ParentNodeProvider, PositionProvider,
                             ScopeProvider)

# Flags that are true on the main process only (lightning: is_global_zero; accelerate: is_main_process, and the
# per-node is_local_main_process, taken as equivalent: prefer missing a case).
FLAGS = {"is_global_zero", "is_main_process", "is_local_main_process", "is_master", "master_process", "is_main",
         "is_rank_zero", "is_rank0", "is_chief"}
RANK_VALUES = {"process_index", "local_process_index"}
RANK_CALLS = {"get_rank", "get_global_rank"}
DECORATORS = {"rank_zero_only", "on_main_process", "on_local_main_process", "main_process_only"}
EXITS = {"exit", "sys.exit", "quit", "os._exit"}
RANK_WORDS = ("rank", "master", "main_process", "is_main", "is_global_zero", "process_index", "chief")
# the input's tests may also name a process by its GPU (`if args.gpu == 0:`, which PTM137 turns into
# `fabric.local_rank == 0`): the user's own guard too
INPUT_WORDS = RANK_WORDS + ("gpu", "primary", "leader", "zero")


def _dotted(node) -> Optional[str]:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr.value}" if inner else None
    return None


def _last(node) -> str:
    name = _dotted(node)
    return name.rsplit(".", 1)[-1].lower() if name else ""


def _is_rank(node) -> bool:
    """`rank`, `args.local_rank`, `fabric.global_rank`, `accelerator.process_index`, `dist.get_rank()`."""
    if isinstance(node, cst.Call):
        return not node.args and _last(node.func) in RANK_CALLS
    word = _last(node)
    return word in RANK_VALUES or ("rank" in word and word not in ("node_rank",) and not word.startswith("num"))


def _int(node) -> Optional[int]:
    if isinstance(node, cst.Integer):
        return int(node.evaluated_value)
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus) and \
            isinstance(node.expression, cst.Integer):
        return -int(node.expression.evaluated_value)
    return None


def _compare(test: cst.Comparison) -> Optional[bool]:
    """True for a rank-0 test (`rank == 0`, `rank in (-1, 0)`, `rank < 1`), False for its negation, else None."""
    if len(test.comparisons) != 1:
        return None
    op, left, right = test.comparisons[0].operator, test.left, test.comparisons[0].comparator
    if _is_rank(right) and _int(left) is not None:  # `0 == rank`, `0 < rank`
        flip = {cst.LessThan: cst.GreaterThan, cst.GreaterThan: cst.LessThan,
                cst.LessThanEqual: cst.GreaterThanEqual, cst.GreaterThanEqual: cst.LessThanEqual}
        op = flip.get(type(op), type(op))()
        left, right = right, left
    if not _is_rank(left):
        return None
    if isinstance(op, (cst.In, cst.NotIn)):
        if not isinstance(right, (cst.List, cst.Tuple, cst.Set)) or not right.elements:
            return None
        values = [_int(e.value) for e in right.elements]
        if any(v is None or v > 0 for v in values) or 0 not in values:
            return None
        return isinstance(op, cst.In)
    n = _int(right)
    if n is None:
        return None
    if (isinstance(op, cst.Equal) and n == 0) or (isinstance(op, cst.LessThanEqual) and n == 0) or \
            (isinstance(op, cst.LessThan) and n == 1):
        return True
    if (isinstance(op, cst.NotEqual) and n == 0) or (isinstance(op, cst.GreaterThan) and n == 0) or \
            (isinstance(op, cst.GreaterThanEqual) and n == 1):
        return False
    return None


def implies_main(test) -> bool:
    """Whether `test` is true on the main process only: the body of `if test:` runs on no other rank."""
    if isinstance(test, (cst.Name, cst.Attribute)):
        return _last(test) in FLAGS
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):  # `not rank`: rank 0
        return _is_rank(test.expression) or covers_others(test.expression)
    if isinstance(test, cst.BooleanOperation):
        if isinstance(test.operator, cst.And):
            return implies_main(test.left) or implies_main(test.right)
        return implies_main(test.left) and implies_main(test.right)
    if isinstance(test, cst.Comparison):
        return _compare(test) is True
    return False


def covers_others(test) -> bool:
    """Whether `test` is true on every rank but the main one: the `else` of `if test:`, and what follows
    `if test: return`, run on the main process only."""
    if isinstance(test, (cst.Name, cst.Attribute, cst.Call)) and _is_rank(test):  # `if rank:` is rank != 0
        return True
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        return implies_main(test.expression)
    if isinstance(test, cst.BooleanOperation):
        if isinstance(test.operator, cst.Or):
            return covers_others(test.left) or covers_others(test.right)
        return covers_others(test.left) and covers_others(test.right)
    if isinstance(test, cst.Comparison):
        return _compare(test) is False
    return False


def rankish(test) -> bool:
    """Any test that reads a rank, a main-process flag or a GPU number (the input's guards: the user's own choice
    of processes; broad on purpose, it only keeps a name out of the report)."""
    for node in _walk(test):
        if isinstance(node, (cst.Name, cst.Attribute)) and any(w in _last(node) for w in INPUT_WORDS):
            return True
    return False


def _walk(node) -> Iterable[cst.CSTNode]:
    todo = [node]
    while todo:
        n = todo.pop()
        yield n
        todo.extend(n.children)


def _exits(block) -> bool:
    """The block ends in `return`, `raise`, `continue`, `break` or `sys.exit(...)`."""
    body = block.body if isinstance(block, cst.IndentedBlock) else [block] if block is not None else []
    if not body or not isinstance(body[-1], cst.SimpleStatementLine):
        return False
    last = body[-1].body[-1]
    if isinstance(last, (cst.Return, cst.Raise, cst.Continue, cst.Break)):
        return True
    return isinstance(last, cst.Expr) and isinstance(last.value, cst.Call) and _dotted(last.value.func) in EXITS


def _main_only_decorated(fn: cst.FunctionDef) -> bool:
    for d in fn.decorators:
        expr = d.decorator.func if isinstance(d.decorator, cst.Call) else d.decorator
        if _last(expr) in DECORATORS:
            return True
    return False


class _Guards:
    """Where the guards of one module are, through ParentNodeProvider. `main_only(test)` / `others(test)` say
    what counts as a guard: the output's main-only tests, or any rank test of the input."""

    def __init__(self, parents, main_only, others):
        self.parents, self.main_only, self.others = parents, main_only, others

    def guard(self, node, stop) -> Optional[cst.CSTNode]:
        """The guard that keeps `node` off the other ranks, looking up to `stop` (a function, or the module), or
        None when every rank that runs `stop` reaches it."""
        child, cur = node, self.parents.get(node)
        while cur is not None:
            if isinstance(cur, cst.If):
                if (child is cur.body and self.main_only(cur.test)) or (child is cur.orelse and self.others(cur.test)):
                    return cur
            elif isinstance(cur, cst.IfExp):
                if (child is cur.body and self.main_only(cur.test)) or (child is cur.orelse and self.others(cur.test)):
                    return cur
            elif isinstance(cur, cst.BooleanOperation) and child is cur.right:  # `main and x`, `not main or x`
                if (isinstance(cur.operator, cst.And) and self.main_only(cur.left)) or \
                        (isinstance(cur.operator, cst.Or) and self.others(cur.left)):
                    return cur
            elif isinstance(cur, (cst.IndentedBlock, cst.Module)) and child in cur.body:
                for stmt in cur.body[:cur.body.index(child)]:  # `if not main: return` above it in the block
                    if isinstance(stmt, cst.If) and stmt.orelse is None and self.others(stmt.test) and \
                            _exits(stmt.body):
                        return stmt
            elif isinstance(cur, cst.FunctionDef) and _main_only_decorated(cur):
                return cur
            if cur is stop:
                return None
            child, cur = cur, self.parents.get(cur)
        return None


def _enclosing(node, parents) -> cst.CSTNode:
    """The function, lambda or module whose run runs `node` (class bodies and comprehensions run inline)."""
    cur = parents.get(node)
    while cur is not None and not isinstance(cur, (cst.FunctionDef, cst.Lambda, cst.Module)):
        cur = parents.get(cur)
    return cur


def _caught_name_error(node, parents) -> bool:
    """Inside a `try` whose handlers catch NameError (or everything): the script expects the name may be missing."""
    child, cur = node, parents.get(node)
    while cur is not None and not isinstance(cur, (cst.FunctionDef, cst.Module)):
        if isinstance(cur, cst.Try) and child is cur.body:
            for h in cur.handlers:
                if h.type is None or any(_last(n) in ("nameerror", "exception", "baseexception", "unboundlocalerror")
                                         for n in _walk(h.type) if isinstance(n, (cst.Name, cst.Attribute))):
                    return True
        child, cur = cur, parents.get(cur)
    return False


class _Module:
    """One parsed module with its scopes, parents and the run-state of its functions."""

    def __init__(self, code: str, main_only, others):
        self.wrapper = MetadataWrapper(cst.parse_module(code), unsafe_skip_copy=True)  # parsed here: no copy
        found = self.wrapper.resolve_many([ScopeProvider, ParentNodeProvider])  # one walk for both
        self.scopes, self.parents = found[ScopeProvider], found[ParentNodeProvider]
        self.guards = _Guards(self.parents, main_only, others)
        self.module = self.wrapper.module

    def binding_scopes(self) -> List[object]:
        """The module's scope and its functions' scopes (a comprehension's or class body's names stay there)."""
        seen, out = set(), []
        for scope in self.scopes.values():
            if isinstance(scope, (GlobalScope, FunctionScope)) and id(scope) not in seen:
                seen.add(id(scope))
                out.append(scope)
        return out

    def owner(self, scope) -> cst.CSTNode:
        return self.module if isinstance(scope, GlobalScope) else scope.node

    def key(self, scope) -> str:
        """"" for the module, "Trainer.fit" / "main.step" for a function: the same function in input and output."""
        if isinstance(scope, GlobalScope):
            return ""
        parts, cur = [], scope.node
        while cur is not None:
            if isinstance(cur, (cst.FunctionDef, cst.ClassDef)):
                parts.append(cur.name.value)
            elif isinstance(cur, cst.Lambda):
                parts.append("<lambda>")
            cur = self.parents.get(cur)
        return ".".join(reversed(parts))

    def bindings(self, scope) -> Dict[str, List[object]]:
        out: Dict[str, List[object]] = {}
        for a in scope.assignments:
            if isinstance(getattr(a, "node", None), cst.CSTNode):
                out.setdefault(a.name, []).append(a)
        return out

    def run_states(self) -> Tuple[Set[int], Set[int]]:
        """id() of the functions that run on every rank (called outside a guard from module-level code or from
        another such function) and of those that run on the main process only (every use is a call under a guard,
        or a call from such a function; or a @rank_zero_only-like decorator). Methods and functions handed over
        as values are in neither."""
        calls: Dict[int, List[cst.Name]] = {}  # function -> the Name nodes that use it
        functions = [n for n in self.parents if isinstance(n, cst.FunctionDef)]
        for fn in functions:
            scope = self.scopes.get(fn)
            if scope is None or not isinstance(scope, (GlobalScope, FunctionScope)):
                continue  # a method: called through self, not by name
            for a in scope.assignments[fn.name.value]:
                if a.node is fn:
                    calls[id(fn)] = [r.node for r in a.references if isinstance(r.node, cst.Name)]
        every, main = set(), {id(f) for f in functions if _main_only_decorated(f)}
        changed = True
        while changed:
            changed = False
            for fn in functions:
                uses = calls.get(id(fn))
                if not uses:
                    continue
                sites = []  # (is a call, enclosing runner, guarded)
                for use in uses:
                    parent = self.parents.get(use)
                    is_call = isinstance(parent, cst.Call) and parent.func is use
                    where = _enclosing(use, self.parents)
                    sites.append((is_call, where, self.guards.guard(use, where) is not None))
                if id(fn) not in every and id(fn) not in main and any(
                        c and not g and (isinstance(w, cst.Module) or id(w) in every) for c, w, g in sites):
                    every.add(id(fn))
                    changed = True
                if id(fn) not in main and id(fn) not in every and all(
                        c and (g or id(w) in main) for c, w, g in sites):
                    main.add(id(fn))
                    changed = True
        return every, main


class _Input:
    """The input's bindings: (scope key, name) -> whether every binding is under a rank test (any scope: name)."""

    def __init__(self, source: str):
        self.mod = _Module(source, rankish, rankish)
        self.by_scope: Dict[Tuple[str, str], List[object]] = {}
        self.by_name: Dict[str, bool] = {}
        self.guarded: Dict[Tuple[str, str], bool] = {}
        for scope in self.mod.binding_scopes():
            owner = self.mod.owner(scope)
            for name, assigns in self.mod.bindings(scope).items():
                guarded = all(self.mod.guards.guard(a.node, owner) is not None for a in assigns)
                self.by_scope[(self.mod.key(scope), name)] = assigns
                self.guarded[(self.mod.key(scope), name)] = guarded
                self.by_name[name] = self.by_name.get(name, True) and guarded

    def users_own(self, key: Tuple[str, str]) -> bool:
        return self.guarded.get(key, self.by_name.get(key[1], False))

    def line(self, key: Tuple[str, str]) -> Optional[int]:
        """The first line where the input binds the name on every rank (the binding the migration moved)."""
        pos = self.mod.wrapper.resolve(PositionProvider)
        lines = [pos[a.node].start.line for a in self.by_scope.get(key, ()) if a.node in pos]
        return min(lines) if lines else None


def _words(test: ast.AST, words: Tuple[str, ...]) -> bool:
    return any(w in (n.id if isinstance(n, ast.Name) else n.attr).lower()
               for n in ast.walk(test) if isinstance(n, (ast.Name, ast.Attribute)) for w in words)


def _output_if(node: ast.If) -> Tuple[bool, bool]:
    """(body, else) of an output `if` run on the main process only: the scope analysis' own tests, on the test
    reparsed by libcst (a few tokens)."""
    if not _words(node.test, RANK_WORDS):
        return False, False
    try:
        test = cst.parse_expression(ast.unparse(node.test))
    except (cst.ParserSyntaxError, RecursionError, ValueError):
        return True, True
    return implies_main(test), covers_others(test)


def _input_if(node: ast.If) -> Tuple[bool, bool]:
    """(body, else) of an input `if` under a rank test of the script's own: both."""
    found = _words(node.test, INPUT_WORDS)
    return found, found


def _ast_exits(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.Return, ast.Raise, ast.Continue, ast.Break)):
        return True
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and \
        ast.unparse(stmt.value.func) in EXITS


Key = Tuple[str, str]  # (scope: "" for the module, "Trainer.fit" for a method; name)


def _lexical(code: str, guards) -> Optional[Tuple[Set[Key], Set[Key], Set[str]]]:
    """By `ast`, lexically: (the (scope, name) bindings inside an `if` branch that `guards(if)` -> (body, else)
    calls main-only, below `if <test>: return` whose else is, or in a @rank_zero_only-like function; the other
    bindings; the names read outside such branches). A function's body starts unguarded, as in the scope analysis
    (a guard around a `def` is not one around its body). None when the code does not parse."""
    from migrator.selfcheck import _parse  # cached: the self-check parsed both texts already
    tree = _parse(code)
    if tree is None:
        return None
    inside: Set[Key] = set()
    outside: Set[Key] = set()
    reads: Set[str] = set()

    def names(node: ast.AST, scope: str, guarded: bool, after_exit: bool) -> None:
        # `after_exit`: below `if <test>: return` in a block: a binding there counts as inside, a read still as
        # outside (over-approximate: the scope analysis decides)
        binds = guarded or after_exit
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                if not guarded:
                    reads.add(node.id)
            else:
                (inside if binds else outside).add((scope, node.id))
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            name = getattr(node, "name", "<lambda>")
            if not isinstance(node, ast.Lambda):
                (inside if binds else outside).add((scope, name))
            for d in getattr(node, "decorator_list", []) + getattr(node, "bases", []):
                names(d, scope, guarded, after_exit)
            inner = f"{scope}.{name}" if scope else name
            if isinstance(node, ast.ClassDef):  # a class body runs where it stands
                block(node.body, inner, guarded, after_exit)
                return
            decorated = any(isinstance(n, (ast.Name, ast.Attribute)) and
                            (n.id if isinstance(n, ast.Name) else n.attr) in DECORATORS
                            for d in node.decorator_list for n in ast.walk(d)) if not isinstance(node, ast.Lambda) \
                else False
            for a in ast.walk(node.args):
                if isinstance(a, ast.arg):
                    outside.add((inner, a.arg))
                elif isinstance(a, ast.Name):
                    names(a, scope, guarded, after_exit)
            if isinstance(node, ast.Lambda):
                names(node.body, inner, decorated, False)
            else:
                block(node.body, inner, decorated, False)
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            scope = f"{scope}.<comp>"  # its targets are its own (the scope analysis skips them)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                (inside if binds else outside).add((scope, (a.asname or a.name).split(".")[0]))
        elif isinstance(node, ast.ExceptHandler) and node.name:
            (inside if binds else outside).add((scope, node.name))
        for field, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                branch = isinstance(node, ast.If) and field in ("body", "orelse") and guards(node)[field == "orelse"]
                block(value, scope, guarded or branch, after_exit)
            elif isinstance(value, list):
                for v in value:
                    if isinstance(v, ast.AST):
                        names(v, scope, guarded, after_exit)
            elif isinstance(value, ast.AST):
                names(value, scope, guarded, after_exit)

    def block(stmts: List[ast.stmt], scope: str, guarded: bool, after_exit: bool) -> None:
        for stmt in stmts:
            names(stmt, scope, guarded, after_exit)
            if not after_exit and isinstance(stmt, ast.If) and not stmt.orelse and _ast_exits(stmt.body[-1]) \
                    and guards(stmt)[1]:
                after_exit = True

    block(tree.body, "", False, False)
    return inside, outside, reads


def _candidates(source: str, output: str) -> Optional[Set[Key]]:
    """Cheap test before libcst: the (scope, name) pairs whose every binding in the output's scope is inside a
    main-only branch and whose name is read outside one, less those the input binds only under its own rank tests
    (the user's own code). A lexical over-approximation of what the scope analysis finds: most outputs only guard
    saves and prints and never get to it. None: not known (too deep for `ast`), let the scope analysis decide."""
    try:
        found = _lexical(output, _output_if)
        if found is None:
            return set()
        inside, outside, reads = found
        pairs = {(k, n) for k, n in inside if (k, n) not in outside and n in reads}
        old = _lexical(source, _input_if) if pairs else None
    except RecursionError:
        return None
    if old is not None:
        old_in, old_out, _ = old
        keys = old_in | old_out
        by_name_in, by_name_out = {n for _, n in old_in}, {n for _, n in old_out}
        pairs = {(k, n) for k, n in pairs
                 if not ((k, n) in old_in and (k, n) not in old_out) and
                 not ((k, n) not in keys and n in by_name_in and n not in by_name_out)}
    return pairs


def main_only_reads(source: str, output: str) -> List[Tuple[int, Optional[int], str]]:
    """(output line of its first such read, input line of its binding or None, message) for each name that the output binds on the main process only and reads on every rank,
    where the input did not (see the module docstring). Inputs: the input and output text of one module, both
    parseable. Output: [] when there is none. Relies on: lightning's `is_global_zero` / `global_rank == 0` and
    accelerate's `is_main_process` / `process_index == 0` being true on one process of the run."""
    candidates = _candidates(source, output)
    if candidates is not None and not candidates:
        return []
    try:
        out_mod = _Module(output, implies_main, covers_others)
    except (cst.ParserSyntaxError, RecursionError):
        return []
    every, main = out_mod.run_states()
    old: Optional[_Input] = None
    found: List[Tuple[int, str]] = []
    for scope in out_mod.binding_scopes():
        owner = out_mod.owner(scope)
        for name, assigns in sorted(out_mod.bindings(scope).items()):
            if candidates is not None and (out_mod.key(scope), name) not in candidates:
                continue
            guards = [out_mod.guards.guard(a.node, owner) for a in assigns]
            if not guards or any(g is None for g in guards):
                continue
            reads = _every_rank_reads(out_mod, owner, assigns, every, main)
            if not reads:
                continue
            if old is None:
                try:
                    old = _Input(source)
                except (cst.ParserSyntaxError, RecursionError):
                    return []
            key = (out_mod.key(scope), name)
            if old.users_own(key):
                continue  # the input bound it under a rank test too: the user's own code
            pos = out_mod.wrapper.resolve(PositionProvider)
            guard_line, read_line = pos[guards[0]].start.line, min(pos[r].start.line for r in reads)
            found.append((read_line, old.line(key),
                          f"`{name}` would be bound on the main process only (the migrated code's line {guard_line}"
                          f" guards it; the input binds it on every rank) but every rank reads it (line "
                          f"{read_line} of the migrated code): the other ranks would fail with NameError"))
    return sorted(found)


def _every_rank_reads(mod: _Module, owner, assigns, every: Set[int], main: Set[int]) -> List[cst.CSTNode]:
    """The reads of the name that every rank runs."""
    reads, out = {id(r.node): r.node for a in assigns for r in a.references if isinstance(r.node, cst.Name)}, []
    for node in reads.values():
        if isinstance(mod.parents.get(node), cst.AugAssign):
            continue  # `x += 1` binds too: counted among the bindings
        where = _enclosing(node, mod.parents)
        if isinstance(where, cst.Lambda):
            continue
        if where is owner:
            # the scope that binds it: a function only called under a guard runs on the main process only
            if isinstance(where, cst.FunctionDef) and id(where) in main:
                continue
        elif not isinstance(where, cst.FunctionDef) or id(where) not in every:
            continue  # another function: only one known to run on every rank counts
        if mod.guards.guard(node, where) is None and not _caught_name_error(node, mod.parents):
            out.append(node)
    return out
