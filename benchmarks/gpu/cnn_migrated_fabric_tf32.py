"""A plain single-GPU PyTorch training script: a ResNet-ish CNN on synthetic 3x64x64 images, batch 128, SGD.

The input of the benchmark in benchmarks/gpu/run.sh: pt-migrate turns this file into cnn_migrated_*.py
(benchmarks/gpu/prepare.sh).

    python cnn.py --steps 100 --warmup 20
    python cnn.py --smoke            # tiny sizes, 2 steps, CPU when there is no GPU

The last line is `RESULT samples_per_s=<float>`: images per second over all processes, timed after the
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


class RandomImages(Dataset):
    """Random images and labels: a fixed pool, indexed round-robin (no data-loading cost)."""

    def __init__(self, length, size, classes, pool=256):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(pool, 3, size, size, generator=g)
        self.labels = torch.randint(0, classes, (pool,), generator=g)
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        return self.images[i % len(self.images)], self.labels[i % len(self.labels)]


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.short(x))


class ResNetish(nn.Module):
    def __init__(self, classes=100, widths=(64, 128, 256, 512), blocks=2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks):
                layers.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=100, help="timed steps")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--batch-size", type=int, default=128, help="per process")
    p.add_argument("--smoke", action="store_true", help="tiny model, 2 steps: does it run at all")
    args = p.parse_args(argv)
    args.size, args.classes, args.widths = 64, 100, (64, 128, 256, 512)
    if args.smoke:
        args.steps, args.warmup, args.batch_size = 2, 1, 4
        args.size, args.classes, args.widths = 16, 10, (8, 16, 16, 16)
    return args


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def main():
    fabric = Fabric(accelerator="cuda", devices=2, strategy="ddp")
    fabric.launch()
    torch.set_float32_matmul_precision("high")
    args = parse_args()
    fabric.seed_everything(0)
    torch.backends.cudnn.benchmark = True
    total = args.warmup + args.steps
    dataset = RandomImages(total * args.batch_size * 8, args.size, args.classes)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, drop_last=True, num_workers=2,
                        pin_memory=torch.cuda.is_available())
    loader = fabric.setup_dataloaders(loader)
    model = ResNetish(args.classes, args.widths)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model, optimizer = fabric.setup(model, optimizer)
    model.train()
    start = None
    for step, (images, labels) in enumerate(loader):
        if step == args.warmup:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
        if step == total:
            break
        loss = F.cross_entropy(model(images), labels)
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
