"""Stand-in for enwik8 (lucidrains/MEGABYTE-pytorch train.py reads 95e6 bytes of ./data/enwik8.gz and splits at
90e6): 90.5 MB of bytes, a random 1 MiB block repeated (so gzip is quick), fixed seed."""
import gzip
import os

import numpy as np

rng = np.random.default_rng(0)
block = rng.integers(32, 127, 2 ** 20, dtype=np.uint8).tobytes()
os.makedirs("data", exist_ok=True)
with gzip.open("data/enwik8.gz", "wb", compresslevel=1) as f:
    for _ in range(86):
        f.write(block)
    f.write(block[: 90_500_000 - 86 * 2 ** 20])
