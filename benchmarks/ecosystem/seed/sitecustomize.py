"""Seeds every Python process of an ecosystem run at start (PTM_ECO_SEED), before the script runs.

Several corpus scripts never seed (random initial weights on each run), so the original and the migrated script
could not be compared step by step. The harness also sets PYTHONHASHSEED=0 (one script builds its vocabulary from a set). Seeding at interpreter start changes nothing else: a script that seeds
itself (or whose migration calls the framework's seed_everything) overrides this.
"""
import os

_seed = os.environ.get("PTM_ECO_SEED")
if _seed:
    import random

    random.seed(int(_seed))
    try:
        import numpy

        numpy.random.seed(int(_seed))
    except Exception:
        pass
    try:
        import torch

        torch.manual_seed(int(_seed))
    except Exception:
        pass
