"""A cheap textual test that keeps files which cannot be training scripts away from the parser."""
from __future__ import annotations


def may_be_training_script(source: str, options=None) -> bool:
    """False only when the file surely is not a training script: no torch, or no backward and no optimizer."""
    if options is not None and options.external_fw_functions:
        return True  # an entry script whose loop lives in a sibling module
    if "torch" not in source:
        return False
    return "backward" in source or ("optim" in source and ".step(" in source)
