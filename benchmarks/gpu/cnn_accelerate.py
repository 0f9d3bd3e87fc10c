"""CNN benchmark, written by hand for Accelerate: `torchrun --nproc_per_node 2 cnn_accelerate.py [--precision bf16]`."""
import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from _common import split_args
from cnn import RandomImages, ResNetish, parse_args


def main():
    own, rest = split_args("no", ["no", "bf16", "fp16"])
    args = parse_args(rest)
    accelerator = Accelerator(mixed_precision=own.precision, cpu=not torch.cuda.is_available())
    set_seed(0)
    torch.backends.cudnn.benchmark = True
    total = args.warmup + args.steps
    loader = DataLoader(RandomImages(total * args.batch_size * 8, args.size, args.classes),
                        batch_size=args.batch_size, shuffle=False, drop_last=True, num_workers=2,
                        pin_memory=torch.cuda.is_available())
    model = ResNetish(args.classes, args.widths)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
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
        loss = F.cross_entropy(model(x), y)
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
