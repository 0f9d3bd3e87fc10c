"""GPT benchmark, written by hand for Lightning Fabric: `python gpt_fabric.py --devices 2 [--precision bf16-mixed]`."""
import time

import torch
import torch.nn.functional as F
from lightning.fabric import Fabric
from torch.utils.data import DataLoader

from _common import split_args
from gpt import GPT, RandomTokens, parse_args


def main():
    own, rest = split_args("32-true", ["32-true", "bf16-mixed", "16-mixed"])
    args = parse_args(rest)
    cuda = torch.cuda.is_available()
    devices = own.devices or (torch.cuda.device_count() if cuda else 1)
    fabric = Fabric(accelerator="cuda" if cuda else "cpu", devices=devices,
                    strategy="ddp" if devices > 1 else "auto", precision=own.precision)
    fabric.launch()
    fabric.seed_everything(0)
    total = args.warmup + args.steps
    loader = DataLoader(RandomTokens(total * args.batch_size * 8, args.seq_len, args.vocab),
                        batch_size=args.batch_size, shuffle=False, drop_last=True)
    loader = fabric.setup_dataloaders(loader)
    model = GPT(args.vocab, args.seq_len, args.d, args.layers, args.heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    model, optimizer = fabric.setup(model, optimizer)
    model.train()
    start = None
    for step, (x, y) in enumerate(loader):
        if step == args.warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        if step == total:
            break
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        fabric.backward(loss)
        optimizer.step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    fabric.print(f"final loss {loss.item():.4f}")
    fabric.print(f"RESULT samples_per_s={args.steps * args.batch_size * fabric.world_size / elapsed:.2f}")


if __name__ == "__main__":
    main()
