import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers (fixture_support) import by name


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs whole scripts in subprocesses (seconds to minutes)")
