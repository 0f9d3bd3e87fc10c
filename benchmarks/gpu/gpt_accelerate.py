"""GPT benchmark, written by hand for Accelerate: `torchrun --nproc_per_node 2 gpt_accelerate.py [--precision bf16]`."""
import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from _common import split_args
from gpt import GPT, RandomTokens, parse_args


def main():
    own, rest = split_args("no", ["no", "bf16", "fp16"])
    args = parse_args(rest)
    accelerator = Accelerator(mixed_precision=own.precision, cpu=not torch.cuda.is_available())
    set_seed(0)
    total = args.warmup + args.steps
    loader = DataLoader(RandomTokens(total * args.batch_size * 8, args.seq_len, args.vocab),
                        batch_size=args.batch_size, shuffle=False, drop_last=True)
    model = GPT(args.vocab, args.seq_len, args.d, args.layers, args.heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
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
        accelerator.backward(loss)
        optimizer.step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    accelerator.print(f"final loss {loss.item():.4f}")
    accelerator.print(f"RESULT samples_per_s={args.steps * args.batch_size * accelerator.num_processes / elapsed:.2f}")


if __name__ == "__main__":
    main()
