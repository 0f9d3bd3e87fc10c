"""Table and ratios of benchmarks/gpu/run.sh's results.tsv: `python report.py results.tsv N`."""
import math
import statistics
import sys
from collections import defaultdict

ORDER = ["orig", "mig_fab", "hand_fab", "mig_acc", "hand_acc", "ddp",
         "mig_fab_bf16", "hand_fab_bf16", "mig_acc_bf16", "hand_acc_bf16", "ddp_bf16", "mig_fab_tf32", "mig_acc_tf32"]


def main(path, n):
    runs = defaultdict(list)
    gpus = {}
    for line in open(path):
        model, variant, g, _round, sps = line.rstrip("\n").split("\t")
        runs[(model, variant)].append(float(sps))
        gpus[(model, variant)] = int(g)
    med = {k: statistics.median(v) if all(math.isfinite(x) for x in v) else float("nan") for k, v in runs.items()}
    models = sorted({m for m, _ in runs}, key=lambda m: ["gpt", "cnn"].index(m) if m in ("gpt", "cnn") else 9)
    print(f"\n{'model':<5} {'variant':<14} {'GPUs':>4} {'samples/s (median)':>19}  {'all rounds'}")
    for m in models:
        for v in ORDER:
            if (m, v) in med:
                rounds = ", ".join(f"{x:.1f}" for x in runs[(m, v)])
                print(f"{m:<5} {v:<14} {gpus[(m, v)]:>4} {med[(m, v)]:>19.1f}  {rounds}")

    def ratio(m, a, b):
        return med.get((m, a), float("nan")) / med.get((m, b), float("nan"))

    print("\nratios (median samples/s)")
    for m in models:
        orig = med.get((m, "orig"), float("nan"))
        print(f"{m}: migrated/hand  fabric {ratio(m, 'mig_fab', 'hand_fab'):.3f}  accelerate {ratio(m, 'mig_acc', 'hand_acc'):.3f}"
              f"  | bf16: fabric {ratio(m, 'mig_fab_bf16', 'hand_fab_bf16'):.3f}  accelerate "
              f"{ratio(m, 'mig_acc_bf16', 'hand_acc_bf16'):.3f}")
        eff = "  ".join(f"{v} {med.get((m, v), float('nan')) / (n * orig):.3f}"
                        for v in ("mig_fab", "hand_fab", "mig_acc", "hand_acc", "ddp"))
        print(f"{m}: scaling efficiency sps({n} GPU)/({n} x sps(1 GPU orig fp32)): {eff}")
        sp = "  ".join(f"{v} {med.get((m, v), float('nan')) / orig:.2f}x"
                       for v in ("mig_fab_bf16", "hand_fab_bf16", "mig_acc_bf16", "hand_acc_bf16", "ddp_bf16"))
        print(f"{m}: bf16 speed-up over the original fp32 on 1 GPU ({n} GPUs, bf16): {sp}")
        print(f"{m}: migrated/ddp fp32  fabric {ratio(m, 'mig_fab', 'ddp'):.3f}  accelerate {ratio(m, 'mig_acc', 'ddp'):.3f}")
        if (m, "mig_fab_tf32") in med:
            print(f"{m}: --matmul-precision high over fp32, migrated: fabric {ratio(m, 'mig_fab_tf32', 'mig_fab'):.2f}x"
                  f"  accelerate {ratio(m, 'mig_acc_tf32', 'mig_acc'):.2f}x")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2)
