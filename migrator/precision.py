"""What mixed precision a script's own AMP code asks for, so the framework's precision setting can match it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import libcst as cst
from libcst.metadata import MetadataWrapper, QualifiedNameProvider

from migrator.imports import with_import_names

from migrator.names import dotted
from migrator.matching import Visitor

AUTOCASTS = {"torch.autocast", "torch.cuda.amp.autocast", "torch.amp.autocast", "torch.cpu.amp.autocast"}
SCALERS = {"torch.cuda.amp.GradScaler", "torch.amp.GradScaler", "torch.GradScaler"}
DTYPES = {"torch.float16": "float16", "torch.half": "float16", "torch.bfloat16": "bfloat16"}

FABRIC = {"float16": "16-mixed", "bfloat16": "bf16-mixed"}
ACCELERATE = {"float16": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class ScriptPrecision:
    dtype: str  # "float16" or "bfloat16"
    conditional: bool  # AMP switched by a runtime condition (enabled=...): assume "on CUDA only"

    def code(self, target: str) -> str:
        """A Python expression for the constructor argument."""
        on = (FABRIC if target == "fabric" else ACCELERATE)[self.dtype]
        if not self.conditional:
            return f'"{on}"'
        off = "32-true" if target == "fabric" else "no"
        return f'"{on}" if torch.cuda.is_available() else "{off}"'


class _Finder(Visitor):
    METADATA_DEPENDENCIES = (QualifiedNameProvider,)

    def __init__(self):
        super().__init__()
        self.dtype: Optional[str] = None
        self.scaler = False
        self.conditional = False
        self.assigned = {}  # name -> value, to read `dtype=ptdtype`
        self.in_ifexp = 0

    def visit_Assign(self, node: cst.Assign) -> None:
        for t in node.targets:
            if isinstance(t.target, cst.Name):
                self.assigned[t.target.value] = node.value

    def visit_IfExp(self, node: cst.IfExp) -> None:
        self.in_ifexp += 1

    def leave_IfExp(self, node: cst.IfExp) -> None:
        self.in_ifexp -= 1

    def _dtype_of(self, node: cst.BaseExpression) -> Optional[str]:
        dq = {n.name for n in self.get_metadata(QualifiedNameProvider, node, set())} or {dotted(node)}
        for d in dq:
            if d in DTYPES:
                return DTYPES[d]
        value = self.assigned.get(dotted(node) or "")
        if isinstance(value, cst.IfExp):  # ptdtype = torch.bfloat16 if cuda else torch.float32
            self.conditional = True
            return self._dtype_of(value.body) or self._dtype_of(value.orelse)
        return self._dtype_of(value) if isinstance(value, (cst.Attribute, cst.Name)) and value is not node else None

    def visit_Call(self, node: cst.Call) -> None:
        q = {n.name for n in self.get_metadata(QualifiedNameProvider, node.func, set())}
        if q & AUTOCASTS:
            if self.in_ifexp or _cuda_only(q, node):  # nullcontext() if cpu else autocast(...); CUDA's own AMP
                self.conditional = True
            for a in node.args:
                if a.keyword and a.keyword.value == "dtype":
                    self.dtype = self._dtype_of(a.value) or self.dtype
                self._enabled(a)
            if self.dtype is None:
                self.dtype = "float16"
        elif q & SCALERS:
            # `GradScaler(enabled=False)`: a scaler switched off for good scales nothing, so it asks for no precision
            if any(a.keyword and a.keyword.value == "enabled" and isinstance(a.value, cst.Name)
                   and a.value.value == "False" for a in node.args):
                return
            if self.in_ifexp:
                # `GradScaler() if compute_dtype == torch.float16 else None`: made on the script's own switch; with no
                # autocast anywhere, the script casts by hand (nanochat's bf16 weights) and keeps this scaler
                # (PTM120), so it asks for no precision: one would add an autocast the original never ran. Next to an
                # autocast, the AMP is switched at run time: on CUDA only, as for `enabled=...`
                self.conditional = True
                return
            self.scaler = True
            self.conditional = self.conditional or _cuda_only(q, node)
            for a in node.args:
                self._enabled(a)

    def _enabled(self, arg: cst.Arg) -> None:
        if arg.keyword and arg.keyword.value == "enabled" and not (
                isinstance(arg.value, cst.Name) and arg.value.value == "True"):
            self.conditional = True


def _cuda_only(q, node: cst.Call) -> bool:
    """AMP that acts on CUDA only: `torch.cuda.amp.*`, a GradScaler without a device (CUDA's by default), or
    `torch.autocast("cuda")`. On a CPU run the original then trains in fp32, so the framework's mixed precision must
    be switched on for CUDA only (`"16-mixed" if torch.cuda.is_available() else "32-true"`)."""
    if any(n.startswith("torch.cuda.amp.") for n in q):
        return True
    first = node.args[0].value if node.args and node.args[0].keyword is None else next(
        (a.value for a in node.args if a.keyword and a.keyword.value in ("device_type", "device")), None)
    if first is None:
        return bool(q & SCALERS)
    return isinstance(first, cst.SimpleString) and first.evaluated_value == "cuda"


def script_precision(wrapper: MetadataWrapper, source: Optional[str] = None) -> Optional[ScriptPrecision]:
    finder = _Finder()
    with_import_names(finder, wrapper.module, source).visit(finder)
    if finder.dtype is None and not finder.scaler:
        return None
    return ScriptPrecision(finder.dtype or "float16", finder.conditional)
