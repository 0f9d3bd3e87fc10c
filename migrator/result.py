"""What the engine gives back. Its own module so that the CLI can report on files the pre-scan settled without
importing the engine (and libcst, about a third of a second)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from migrator.diagnostics import Diagnostic


@dataclass
class MigrationResult:
    code: str
    changed: bool
    diagnostics: List[Diagnostic] = field(default_factory=list)
    error: Optional[str] = None  # set when the file could not be migrated; `code` is then the input
    is_training_script: bool = False
    trace: Optional[str] = None  # the Python traceback of an internal error (PTM002), for --debug only

    @property
    def needs_attention(self) -> List[Diagnostic]:
        return [d for d in self.diagnostics if d.needs_attention]
