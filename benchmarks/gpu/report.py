"""Table and ratios of benchmarks/gpu/run.sh's results.tsv: `python report.py results.tsv N [--markdown]`.

Per variant: median samples/s over the rounds, every round, the spread (max - min) / median. Ratios are of medians.
"""
import math
import statistics
import sys
from collections import defaultdict

ORDER = ["orig", "mig_fab", "hand_fab", "mig_acc", "hand_acc", "ddp", "mig_fab_ddpopt", "mig_acc_ddpopt",
         "mig_fab_bf16", "hand_fab_bf16", "mig_acc_bf16", "hand_acc_bf16", "ddp_bf16", "mig_fab_bf16_ddpopt",
         "mig_acc_bf16_ddpopt", "mig_fab_tf32", "mig_acc_tf32"]
NAMES = {
    "orig": "original, 1 GPU fp32", "mig_fab": "migrated Fabric", "hand_fab": "hand-written Fabric",
    "mig_acc": "migrated Accelerate", "hand_acc": "hand-written Accelerate", "ddp": "raw DDP (torchrun)",
    "mig_fab_ddpopt": "migrated Fabric + DDPStrategy(gradient_as_bucket_view, static_graph)",
    "mig_acc_ddpopt": "migrated Accelerate + DistributedDataParallelKwargs(same)",
    "mig_fab_tf32": "migrated Fabric, --matmul-precision high", "mig_acc_tf32": "migrated Accelerate, --matmul-precision high",
}


def load(path):
    runs, gpus, walls, skipped = defaultdict(list), {}, defaultdict(list), defaultdict(int)
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 5:
            continue
        model, variant, g, _round, sps = parts[:5]
        wall = parts[5] if len(parts) > 5 else ""
        gpus[(model, variant)] = int(g)
        if wall == "deadline":
            skipped[(model, variant)] += 1
            continue
        runs[(model, variant)].append(float(sps))
        try:
            walls[(model, variant)].append(float(wall))
        except ValueError:
            pass
    return runs, gpus, walls, skipped


def stats(runs):
    out = {}
    for k, v in runs.items():
        ok = [x for x in v if math.isfinite(x)]
        med = statistics.median(ok) if ok and len(ok) == len(v) else float("nan")
        spread = (max(ok) - min(ok)) / med if ok and med == med and med else float("nan")
        out[k] = (med, spread, len(ok), len(v))
    return out


def label(v):
    if v in NAMES:
        return NAMES[v]
    if v.endswith("_bf16") or "_bf16_" in v:
        base = v.replace("_bf16", "")
        return NAMES.get(base, base).replace(", 1 GPU fp32", "") + ", bf16"
    return v


def ratios(st, m, n):
    def r(a, b):
        return st.get((m, a), (float("nan"),))[0] / st.get((m, b), (float("nan"),))[0]
    orig = st.get((m, "orig"), (float("nan"),))[0]
    rows = []
    for p, sfx in (("fp32", ""), ("bf16", "_bf16")):
        rows.append((f"migrated / hand-written, {p}", f"Fabric {r('mig_fab' + sfx, 'hand_fab' + sfx):.3f}, "
                     f"Accelerate {r('mig_acc' + sfx, 'hand_acc' + sfx):.3f}", ">= 1.0"))
        rows.append((f"migrated / raw DDP, {p}", f"Fabric {r('mig_fab' + sfx, 'ddp' + sfx):.3f}, "
                     f"Accelerate {r('mig_acc' + sfx, 'ddp' + sfx):.3f}", ">= 0.98"))
        if (m, f"mig_fab{sfx}_ddpopt") in st or (m, f"mig_acc{sfx}_ddpopt") in st:
            rows.append((f"migrated + DDP kwargs / raw DDP, {p}",
                         f"Fabric {r(f'mig_fab{sfx}_ddpopt', 'ddp' + sfx):.3f}, "
                         f"Accelerate {r(f'mig_acc{sfx}_ddpopt', 'ddp' + sfx):.3f}", ">= 0.98"))
    eff = ", ".join(f"{v} {st.get((m, v), (float('nan'),))[0] / (n * orig):.3f}"
                    for v in ("mig_fab", "hand_fab", "mig_acc", "hand_acc", "ddp"))
    rows.append((f"scaling efficiency, fp32: sps({n} GPUs) / ({n} x original 1 GPU)", eff, "(raw DDP is the bar)"))
    rows.append((f"bf16 on {n} GPUs / original fp32 on 1 GPU",
                 ", ".join(f"{v} {st.get((m, v), (float('nan'),))[0] / orig:.2f}x"
                           for v in ("mig_fab_bf16", "mig_acc_bf16", "hand_fab_bf16", "hand_acc_bf16", "ddp_bf16")),
                 "migrated >= 2.1x"))
    return rows


def main(path, n, markdown=False):
    runs, gpus, walls, skipped = load(path)
    st = stats(runs)
    models = sorted({m for m, _ in st}, key=lambda m: ["gpt", "cnn"].index(m) if m in ("gpt", "cnn") else 9)
    variants = ORDER + sorted({v for _, v in st} - set(ORDER))
    if markdown:
        for m in models:
            print(f"| variant ({m}, {n} GPUs unless 1 is said) | samples/s, median | rounds | spread |")
            print("|---|---|---|---|")
            for v in variants:
                if (m, v) in st:
                    med, spread, k, _ = st[(m, v)]
                    rounds = ", ".join(f"{x:.0f}" for x in runs[(m, v)])
                    skip = f" ({skipped[(m, v)]} not run: deadline)" if skipped[(m, v)] else ""
                    print(f"| {label(v)} | {med:.0f} | {rounds}{skip} | {spread:.1%} |")
            print()
            print("| ratio (medians) | value | goal |")
            print("|---|---|---|")
            for a, b, c in ratios(st, m, n):
                print(f"| {a} | {b} | {c} |")
            print()
        return
    print(f"\n{'model':<5} {'variant':<20} {'GPUs':>4} {'median sps':>11} {'spread':>7}  all rounds  [s per run]")
    for m in models:
        for v in variants:
            if (m, v) in st:
                med, spread, k, _ = st[(m, v)]
                rounds = ", ".join(f"{x:.1f}" for x in runs[(m, v)])
                w = f"[{statistics.median(walls[(m, v)]):.0f}s]" if walls[(m, v)] else ""
                skip = f" +{skipped[(m, v)]} not run (deadline)" if skipped[(m, v)] else ""
                print(f"{m:<5} {v:<20} {gpus[(m, v)]:>4} {med:>11.1f} {spread:>7.1%}  {rounds} {w}{skip}")
    print("\nratios (median samples/s)")
    for m in models:
        for a, b, c in ratios(st, m, n):
            print(f"{m}: {a}: {b}   (goal {c})")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(args[0], int(args[1]) if len(args) > 1 else 2, "--markdown" in sys.argv)
