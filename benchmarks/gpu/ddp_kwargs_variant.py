"""Make the `ddpopt` variant of a migrated benchmark script: DDP settings passed through the framework's own kwargs.

    python ddp_kwargs_variant.py IN.py OUT.py

Fabric: `strategy="ddp"` becomes `strategy=DDPStrategy(gradient_as_bucket_view=True, static_graph=True)`;
Accelerate: `Accelerator(...)` gets `kwargs_handlers=[DistributedDataParallelKwargs(gradient_as_bucket_view=True,
static_graph=True)]`. What a pt-migrate option (not written yet) would emit; measured by call2_bench.sh against the
plain migration. gradient_as_bucket_view: the gradients are views into DDP's buckets (no copy into them after
backward); static_graph: DDP learns the graph once (no search for unused parameters, earlier bucket readiness).
"""
import sys

KW = "gradient_as_bucket_view=True, static_graph=True"


def main(src, dst):
    text = open(src).read()
    if "from lightning.fabric import Fabric" in text:
        assert 'strategy="ddp"' in text, "no strategy=\"ddp\" in the migrated Fabric script"
        text = text.replace('strategy="ddp"', f"strategy=DDPStrategy({KW})", 1)
        text = text.replace("from lightning.fabric import Fabric",
                            "from lightning.fabric import Fabric\nfrom lightning.fabric.strategies import DDPStrategy", 1)
    elif "from accelerate import Accelerator" in text:
        assert text.count("Accelerator(") == 1, "expected one Accelerator(...)"
        text = text.replace("Accelerator(", f"Accelerator(kwargs_handlers=[DistributedDataParallelKwargs({KW})], ", 1)
        text = text.replace("from accelerate import Accelerator",
                            "from accelerate import Accelerator\nfrom accelerate.utils import DistributedDataParallelKwargs", 1)
        text = text.replace("Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(" + KW + ")], )",
                            "Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(" + KW + ")])")
    else:
        raise SystemExit(f"{src}: neither a Fabric nor an Accelerate script")
    open(dst, "w").write(text)


if __name__ == "__main__":
    main(*sys.argv[1:3])
