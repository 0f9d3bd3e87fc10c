"""Stand-in data for bentrevett/pytorch-transfer-learning predict_tags.py: data/eco_{train,test}.jsonl with
"tokens" and "tags" lists, and tokenizer_eco.pt, a pickled NLTKTokenizer whose vocabularies are built here with the
repository's own Vocab class (so run this in the repository root, with the nltk stub on the path). Fixed seed."""
import json
import os
import random
import sys
from collections import Counter

import torch

sys.path.insert(0, os.getcwd())
from tokenizer import NLTKTokenizer  # noqa: E402
from vocab import Vocab  # noqa: E402

rng = random.Random(0)
words = [f"w{i}" for i in range(200)]
tags = [f"T{i}" for i in range(12)]
os.makedirs("data", exist_ok=True)
os.makedirs("results", exist_ok=True)
tok_freq, tag_freq = Counter(), Counter()
for split, n in (("train", 512), ("test", 64)):
    with open(f"data/eco_{split}.jsonl", "w") as f:
        for _ in range(n):
            length = rng.randint(4, 20)
            toks = [rng.choice(words) for _ in range(length)]
            tg = [tags[int(t[1:]) % len(tags)] for t in toks]
            tok_freq.update(toks)
            tag_freq.update(tg)
            f.write(json.dumps({"tokens": toks, "tags": tg}) + "\n")
tokenizer = NLTKTokenizer()
tokenizer.vocabs["tokens"] = Vocab(tok_freq)
tokenizer.vocabs["tags"] = Vocab(tag_freq, unk_token=None)
torch.save(tokenizer, "tokenizer_eco.pt")
