"""Stand-in for the Cora citation graph (tkipf/pygcn): ../data/cora/cora.{content,cites} relative to the working
folder, 1600 papers (the script indexes nodes up to 1500), 64 binary features, 7 classes, fixed seed."""
import os

import numpy as np

rng = np.random.default_rng(0)
os.makedirs("../data/cora", exist_ok=True)
n, f = 1600, 64
ids = rng.choice(10 ** 6, n, replace=False)
labels = [f"class_{i}" for i in range(7)]
with open("../data/cora/cora.content", "w") as out:
    for i in range(n):
        feats = (rng.random(f) < 0.1).astype(int)
        out.write("\t".join([str(ids[i])] + [str(v) for v in feats] + [labels[rng.integers(7)]]) + "\n")
with open("../data/cora/cora.cites", "w") as out:
    for _ in range(4 * n):
        a, b = rng.integers(n, size=2)
        out.write(f"{ids[a]}\t{ids[b]}\n")
