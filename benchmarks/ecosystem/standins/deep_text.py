"""Stand-in LMDB datasets for clovaai/deep-text-recognition-benchmark: data_lmdb/training/MJ and
data_lmdb/validation, each with num-samples, image-%09d (PNG bytes) and label-%09d keys (the repository's format),
small grey text-line images with random lower-case labels. Fixed seed."""
import io
import os

import lmdb
import numpy as np
from PIL import Image

rng = np.random.default_rng(0)
chars = "0123456789abcdefghijklmnopqrstuvwxyz"
for path, n in (("data_lmdb/training/MJ", 64), ("data_lmdb/validation", 16)):
    os.makedirs(path, exist_ok=True)
    env = lmdb.open(path, map_size=64 * 2 ** 20)
    with env.begin(write=True) as txn:
        for i in range(1, n + 1):
            img = Image.fromarray(rng.integers(0, 256, (32, 100), dtype=np.uint8), mode="L")
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            label = "".join(rng.choice(list(chars), size=rng.integers(3, 9)))
            txn.put(b"image-%09d" % i, buf.getvalue())
            txn.put(b"label-%09d" % i, label.encode())
        txn.put(b"num-samples", str(n).encode())
    env.close()
