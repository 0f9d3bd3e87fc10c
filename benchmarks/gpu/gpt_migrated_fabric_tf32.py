"""A plain single-GPU PyTorch training script: a GPT-style language model on synthetic random tokens.

6 layers, d_model 384, 6 heads, context 256, vocab 8192, batch 32, AdamW. The input of the benchmark in
benchmarks/gpu/run.sh: pt-migrate turns this file into gpt_migrated_*.py (benchmarks/gpu/prepare.sh).

    python gpt.py --steps 100 --warmup 20
    python gpt.py --smoke            # tiny sizes, 2 steps, CPU when there is no GPU

The last line is `RESULT samples_per_s=<float>`: sequences per second over all processes, timed after the
warm-up steps between two torch.cuda.synchronize() calls.
"""
import argparse
import math
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from lightning.fabric import Fabric


class RandomTokens(Dataset):
    """Random token sequences: a fixed pool of random samples, indexed round-robin (no data-loading cost)."""

    def __init__(self, length, seq_len, vocab, pool=512):
        g = torch.Generator().manual_seed(0)
        self.pool = torch.randint(0, vocab, (pool, seq_len + 1), generator=g)
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        tokens = self.pool[i % len(self.pool)]
        return tokens[:-1], tokens[1:]


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab, seq_len, d, layers, heads):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq_len, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=100, help="timed steps")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--batch-size", type=int, default=32, help="per process")
    p.add_argument("--smoke", action="store_true", help="tiny model, 2 steps: does it run at all")
    args = p.parse_args(argv)
    args.vocab, args.seq_len, args.d, args.layers, args.heads = 8192, 256, 384, 6, 6
    if args.smoke:
        args.steps, args.warmup, args.batch_size = 2, 1, 4
        args.vocab, args.seq_len, args.d, args.layers, args.heads = 128, 16, 32, 2, 2
    return args


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def main():
    fabric = Fabric(accelerator="cuda", devices=2, strategy="ddp")
    fabric.launch()
    torch.set_float32_matmul_precision("high")
    args = parse_args()
    fabric.seed_everything(0)
    total = args.warmup + args.steps
    dataset = RandomTokens(total * args.batch_size * 8, args.seq_len, args.vocab)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, drop_last=True)
    loader = fabric.setup_dataloaders(loader)
    model = GPT(args.vocab, args.seq_len, args.d, args.layers, args.heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    model, optimizer = fabric.setup(model, optimizer)
    model.train()
    start = None
    for step, (x, y) in enumerate(loader):
        if step == args.warmup:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
        if step == total:
            break
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        fabric.backward(loss)
        optimizer.step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    samples_per_s = args.steps * args.batch_size * world_size() / elapsed
    assert math.isfinite(loss.item())
    fabric.print(f"final loss {loss.item():.4f}")
    fabric.print(f"RESULT samples_per_s={samples_per_s:.2f}")


if __name__ == "__main__":
    main()
