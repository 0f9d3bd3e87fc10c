"""How to start a migrated script on several devices, for the summary the CLI prints."""
from __future__ import annotations

from typing import List

from migrator.options import Options


def launch_lines(script: str, target: str, options: Options) -> List[str]:
    n = options.devices or "N"
    cpu = options.accelerator == "cpu"
    nodes = options.num_nodes or 2
    lines: List[str] = []
    if target == "fabric" and options.launcher == "fabric-run":
        acc = options.accelerator or "cuda"
        lines.append(f"fabric run --accelerator={acc} --devices={n} {script}")
        lines.append(f"fabric run --accelerator={acc} --devices={n} --num-nodes={nodes} --node-rank=RANK "
                     f"--main-address=HOST --main-port=29500 {script}    # on each node")
        return lines
    if target == "fabric":
        if options.devices:
            lines.append(f"python {script}    # Fabric starts {options.devices} processes itself")
        else:
            lines.append(f"python {script}    # all GPUs of this machine (one process on a CPU machine)")
        lines.append(f"torchrun --nproc_per_node {n} {script}")
    else:
        if cpu:
            lines.append(f"torchrun --nproc_per_node {n} {script}    # CPU: `accelerate launch --cpu` starts one process")
        else:
            lines.append(f"accelerate launch --multi_gpu --num_processes {n} {script}")
            lines.append(f"torchrun --nproc_per_node {n} {script}")
    lines.append(f"torchrun --nnodes {nodes} --node_rank RANK --nproc_per_node {n} --rdzv_backend c10d "
                 f"--rdzv_endpoint HOST:29500 {script}    # on each node")
    return lines
