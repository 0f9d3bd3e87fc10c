"""Structured diagnostics: the engine returns them, the CLI renders them."""
from __future__ import annotations

from dataclasses import dataclass, asdict

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class Diagnostic:
    code: str
    line: int
    column: int
    severity: str
    message: str
    fixed: bool  # True: the tool rewrote it; False: not rewritten (a person acts on it, unless it is a note)

    @property
    def needs_attention(self) -> bool:
        """Not rewritten and not a note: an unfixed item of severity info is correct as written, only worth
        knowing (e.g. accumulation that still syncs every micro-step)."""
        return not self.fixed and self.severity != INFO

    def render(self, path: str) -> str:
        mark = " [*]" if self.fixed else ""
        return f"{path}:{self.line}:{self.column}: {self.code}{mark} {self.message}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["needs_attention"] = self.needs_attention
        return d
