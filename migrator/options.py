"""What the user asked for: target framework and launch settings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

TARGETS = ("fabric", "accelerate")
LAUNCHERS = ("launch", "fabric-run")
MATMUL_PRECISIONS = ("highest", "high", "medium")

# Fabric precision names -> Accelerate's mixed_precision values.
PRECISION_TO_ACCELERATE = {
    "16-mixed": "fp16",
    "bf16-mixed": "bf16",
    "32-true": "no",
    "32": "no",
    "16": "fp16",
    "bf16": "bf16",
}
# Accelerate names accepted on the command line too, mapped back to Fabric's.
ACCELERATE_TO_PRECISION = {"fp16": "16-mixed", "bf16": "bf16-mixed", "no": "32-true"}


@dataclass(frozen=True)
class Options:
    accelerator: Optional[str] = None
    devices: Optional[str] = None
    strategy: Optional[str] = None
    precision: Optional[str] = None
    num_nodes: Optional[int] = None
    launcher: str = "launch"  # "launch": Fabric(...) + fabric.launch(); "fabric-run": no launch()
    matmul_precision: Optional[str] = None  # opt-in: torch.set_float32_matmul_precision(...) after the object
    select: frozenset = field(default_factory=frozenset)  # rule codes to run (empty: all)
    ignore: frozenset = field(default_factory=frozenset)  # rule codes to skip
    # Functions of sibling modules that take the framework object, as "module.func" (see migrator.project).
    external_fw_functions: frozenset = field(default_factory=frozenset)
    module_name: Optional[str] = None

    def fabric_precision(self) -> Optional[str]:
        if self.precision is None:
            return None
        return ACCELERATE_TO_PRECISION.get(self.precision, self.precision)

    def accelerate_precision(self) -> Optional[str]:
        if self.precision is None:
            return None
        return PRECISION_TO_ACCELERATE.get(self.precision, self.precision)
