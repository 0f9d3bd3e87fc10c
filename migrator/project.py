"""Cross-file facts: which functions of a folder's modules take the framework object.

A training loop often lives in a helper module (`trainer.py`) that the entry script imports. Migrating the
folder must change both consistently: the helper's function gains the framework parameter and the entry
script passes it. This module computes, for one folder, the set "module.function" of functions that take
it; the engine receives the set through `Options.external_fw_functions`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, FrozenSet, Optional, Set

import libcst as cst
from libcst.metadata import MetadataWrapper

from migrator.analysis import MAIN_GUARD, MODULE, analyze

_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.M)


def imports_sibling(source: str, siblings) -> bool:
    """Cheap test: does this source import one of the sibling module names?"""
    for a, b in _IMPORT.findall(source):
        name = (a or b).split(".")[0]
        if name in siblings:
            return True
    return False


def folder_fw_functions(sources: Dict[str, str], target: str = "fabric") -> FrozenSet[str]:
    """`sources` maps module name -> source for the candidate modules of one folder."""
    parsed: Dict[str, cst.Module] = {}
    for name, src in sources.items():
        try:
            parsed[name] = cst.parse_module(src)
        except Exception:
            continue
    # candidates: functions that call backward or print, in any module of the folder
    candidates = set()
    infos = {}
    for name, module in parsed.items():
        facts = analyze(MetadataWrapper(module, unsafe_skip_copy=True), target, frozenset(), name)
        infos[name] = facts
        for fname, info in facts.functions.items():
            if fname not in (MODULE, MAIN_GUARD) and (info.has_backward or info.has_print):
                candidates.add(f"{name}.{fname}")
        candidates |= {f"{name}.{c}" for c in facts.class_candidates}
    chosen = {f"{n}.{f}" for n, facts in infos.items() for f in facts.fw_functions | facts.fw_classes}
    # a function that builds its own optimizer makes the object itself (it is its module's setup scope): a caller
    # in a sibling must not pass one, or the caller's argument lands in the function's first parameter
    own_setup = {f"{n}.{facts.setup_scope}" for n, facts in infos.items()
                 if facts.setup_scope not in (None, MODULE, MAIN_GUARD)}
    # A signature changes only when every caller can pass the object: a function that some caller in its own
    # module or in a sibling cannot hand it to (a Dataset's __init__, module-level code) keeps its parameters
    kept: set = set()
    for _ in range(8):  # a fixpoint; folders are small and call chains short
        before = set(chosen)
        for name, module in parsed.items():
            facts = analyze(MetadataWrapper(module, unsafe_skip_copy=True), target,
                            frozenset(candidates | chosen), name)
            roots = {facts.setup_scope} | set(facts.fw_functions)
            if facts.setup_scope == MAIN_GUARD:
                roots.add(MODULE)
            imported = _imported_names(module, candidates | chosen)
            for root in roots:
                info = facts.functions.get(root)
                for callee, _, _ in (info.calls if info else []):
                    if callee in imported and imported[callee] not in kept | own_setup:
                        chosen.add(imported[callee])
            facts = analyze(MetadataWrapper(module, unsafe_skip_copy=True), target, frozenset(chosen), name)
            chosen |= {f"{name}.{f}" for f in facts.fw_functions}
            kept |= {f"{name}.{f}" for f in facts.keeps_signature}
            kept |= {imported[f] for f in facts.external_unreached if f in imported}
            chosen -= kept
        if chosen == before:
            break
    creators = {n for n, facts in infos.items() if facts.setup_scope and not facts.fw_exists}
    return frozenset(chosen) | _cpu_inputs(parsed, sources, target, frozenset(chosen), creators) | \
        _sibling_draws(parsed, creators)


def _sibling_draws(parsed: Dict[str, cst.Module], creators: Set[str]) -> FrozenSet[str]:
    """PTM145's cross-file fact: the classes and functions that a creating script imports from a sibling and calls,
    and that draw from torch's global generator outside `__init__` (a loss helper's `torch.randn`, a diffusion
    trainer's timesteps), as entries of the same set (rules/rank_seed.SIBLING_DRAWS): the creating script's loop draws
    through them, and its ranks need their own seeds."""
    from migrator.rules.rank_seed import SIBLING_DRAWS, draws_outside_init
    out = set()
    for name in creators:
        for qual in _called_siblings(parsed[name], set(parsed) - {name}):
            mod, obj = qual.split(".", 1)
            node = next((n for n in parsed[mod].body if isinstance(n, (cst.FunctionDef, cst.ClassDef))
                         and n.name.value == obj), None)
            if node is not None and draws_outside_init(node):
                out.add(f"{SIBLING_DRAWS}{qual}")
    return frozenset(out)


def _cpu_inputs(parsed: Dict[str, cst.Module], sources: Dict[str, str], target: str, chosen: FrozenSet[str],
                creators: Set[str] = frozenset()):
    """PTM114's cross-file fact: the tensors that a trainer class handed the object makes on the CPU, or that a class
    or function the creating script (`creators`) imports from a sibling and calls makes there beside a model, as
    entries of the same set (rules/input_device.CPU_INPUT), so that the entry script creates the object for CPU
    processes."""
    from migrator.rules.input_device import CPU_INPUT, cpu_input_entries
    constructed: Dict[str, Set[str]] = {}
    for name in creators:
        for qual in _called_siblings(parsed[name], set(parsed) - {name}):
            mod, obj = qual.split(".", 1)
            constructed.setdefault(mod, set()).add(obj)
    out = set()
    for name, module in parsed.items():
        if CPU_INPUT.split()[0] in sources[name]:
            continue  # never: a module that names the prefix would only confuse the set
        if not any(c.startswith(f"{name}.") for c in chosen) and name not in constructed:
            continue
        facts = analyze(MetadataWrapper(module, unsafe_skip_copy=True), target, chosen, name, sources[name])
        try:
            out.update(cpu_input_entries(name, module, facts, sources[name], frozenset(constructed.get(name, ()))))
        except Exception:  # an analysis gap in one module must not stop the folder's migration
            continue
    return frozenset(out)


def _called_siblings(module: cst.Module, siblings: Set[str]) -> Set[str]:
    """"sibling.Name" for each name this module imports from a sibling (`from flow import RF`) and calls."""
    imported = _imported_names(module, frozenset(), siblings)
    if not imported:
        return set()
    from migrator import matching as m
    return {imported[c.func.value] for c in m.findall(module, m.Call())
            if isinstance(c.func, cst.Name) and c.func.value in imported}


def _imported_names(module: cst.Module, qualified, modules: FrozenSet[str] = frozenset()) -> Dict[str, str]:
    """Local name -> "module.name" for each `from module import name` whose "module.name" is in `qualified`, or whose
    module is one of `modules`."""
    out = {}
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.ImportFrom) and small.module is not None and \
                        not isinstance(small.names, cst.ImportStar):
                    mod = cst.Module([]).code_for_node(small.module)
                    for alias in small.names:
                        name = cst.Module([]).code_for_node(alias.name)
                        if f"{mod}.{name}" in qualified or (mod in modules and not small.relative):
                            out[alias.asname.name.value if alias.asname else name] = f"{mod}.{name}"
    return out


class ProjectIndex:
    """Caches the folder facts for a run over many files."""

    def __init__(self, target: str):
        self.target = target
        self._cache: Dict[Path, FrozenSet[str]] = {}
        # by the modules' texts: the entry script and its helper (a folder of two) ask with the same two modules,
        # and each answer costs a libcst parse and several analyses of every module
        self._by_sources: Dict[FrozenSet, FrozenSet[str]] = {}

    def fw_functions_for(self, path: Path, source: str) -> FrozenSet[str]:
        folder = path.resolve().parent
        if folder in self._cache:
            return self._cache[folder]
        siblings = {p.stem: p for p in folder.glob("*.py") if p.resolve() != path.resolve()}
        sources = {path.stem: source}
        if not imports_sibling(source, siblings):
            # this file imports no sibling; but a sibling may import it (the entry script imports the trainer)
            importers = {}
            for stem, p in siblings.items():
                text = _read(p)
                if text is not None and "torch" in text and imports_sibling(text, {path.stem}):
                    importers[stem] = text
            if not importers:
                return frozenset()
            sources.update(importers)
        else:
            for stem, p in siblings.items():
                text = _read(p)
                if text is not None and "torch" in text:
                    sources[stem] = text
        key = frozenset(sources.items())
        if key not in self._by_sources:
            self._by_sources[key] = folder_fw_functions(sources, self.target)
        result = self._by_sources[key]
        if len(sources) > 2:
            self._cache[folder] = result
        return result


def _read(p: Path) -> Optional[str]:
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
