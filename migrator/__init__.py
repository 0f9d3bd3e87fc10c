"""pt-migrate: migrate plain PyTorch training scripts to Lightning Fabric or Hugging Face Accelerate."""
from migrator.diagnostics import Diagnostic
from migrator.options import Options
from migrator.result import MigrationResult

__version__ = "0.1.0"
__all__ = ["Diagnostic", "MigrationResult", "Options", "migrate", "__version__"]


def __getattr__(name):
    # the engine (and libcst) load on first use: a run whose files the pre-scan all settles never needs them
    if name == "migrate":
        from migrator.engine import migrate
        return migrate
    raise AttributeError(f"module 'migrator' has no attribute {name!r}")
