"""GPT benchmark, raw DistributedDataParallel: `torchrun --nproc_per_node 2 gpt_ddp.py [--precision bf16]`.

Without torchrun it runs as a single process (world size 1), so `python gpt_ddp.py --smoke` works on a CPU.
"""
import contextlib
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from _common import split_args
from gpt import GPT, RandomTokens, parse_args


def main():
    own, rest = split_args("fp32", ["fp32", "bf16"])
    args = parse_args(rest)
    cuda = torch.cuda.is_available()
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                       ("MASTER_PORT", "29533")):
        os.environ.setdefault(key, value)
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world, local = dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    total = args.warmup + args.steps
    dataset = RandomTokens(total * args.batch_size * 8, args.seq_len, args.vocab)
    loader = DataLoader(dataset, batch_size=args.batch_size, drop_last=True,
                        sampler=DistributedSampler(dataset, shuffle=False))
    model = DDP(GPT(args.vocab, args.seq_len, args.d, args.layers, args.heads).to(device),
                device_ids=[local] if cuda else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    amp = (torch.autocast(device.type, dtype=torch.bfloat16) if own.precision == "bf16"
           else contextlib.nullcontext())
    model.train()
    start = None
    for step, (x, y) in enumerate(loader):
        if step == args.warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        if step == total:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with amp:
            logits = model(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    if rank == 0:
        print(f"final loss {loss.item():.4f}")
        print(f"RESULT samples_per_s={args.steps * args.batch_size * world / elapsed:.2f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
