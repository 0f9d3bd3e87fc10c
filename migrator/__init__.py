"""pt-migrate: migrate plain PyTorch training scripts to Lightning Fabric or Hugging Face Accelerate."""
from migrator.diagnostics import Diagnostic
from migrator.engine import MigrationResult, migrate
from migrator.options import Options

__version__ = "0.1.0"
__all__ = ["Diagnostic", "MigrationResult", "Options", "migrate", "__version__"]
