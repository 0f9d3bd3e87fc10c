"""Seeds every Python process of an ecosystem run at start (PTM_ECO_SEED), before the script runs.

Several corpus scripts never seed (random initial weights on each run), so the original and the migrated script
could not be compared step by step. The harness also sets PYTHONHASHSEED=0 (one script builds its vocabulary from a set). Rank r of several processes gets the seed plus r. Seeding at interpreter start changes nothing else: a script that
seeds itself (or whose migration calls the framework's seed_everything) overrides this.
"""
import os

_seed = os.environ.get("PTM_ECO_SEED")
if _seed:
    # each rank its own seed, as an unseeded script's ranks would have (torch seeds an unseeded process at random):
    # one seed for all made an unseeded script's ranks draw the same samples (megabyte_enwik8's random windows
    # failed verify d on 2 GPUs). One process keeps the seed itself, so check a still compares run with run.
    _seed = str(int(_seed) + int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0))
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

# modules a recipe asks to import first (PTM_ECO_IMPORTS, comma-separated), e.g. ale_py, which registers the Atari
# environments with gymnasium 1.x only when imported and registered
for _name in filter(None, os.environ.get("PTM_ECO_IMPORTS", "").split(",")):
    try:
        _mod = __import__(_name)
        if _name == "ale_py":
            import gymnasium

            gymnasium.register_envs(_mod)
    except Exception:
        pass
