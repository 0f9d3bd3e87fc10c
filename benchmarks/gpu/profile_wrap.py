"""Run a benchmark script unchanged with torch.profiler around a few of its optimizer steps (rank 0 only).

    python profile_wrap.py --at 20 --steps 5 --out prof.txt -- script.py ARGS...
    torchrun --nproc_per_node 2 profile_wrap.py --at 20 --steps 5 --out prof.txt -- script.py ARGS...

The script runs through runpy as __main__ (Fabric's launcher then starts the other ranks with the plain script).
A global optimizer step post-hook starts the profiler after step AT and stops it after step AT+STEPS, inside the
warm-up (call2_bench.sh puts it well before the timed steps, so the measurement starts after it). The summary written
to OUT: milliseconds per step (host clock, synchronized), GPU kernel time split into compute / NCCL / memcpy and
memset, the share of the step the compute stream is idle (host-bound work: Python, wrappers, launches, the loader),
and the top operators by self CUDA and self CPU time.
"""
import argparse
import os
import runpy
import sys
import time


def _dev(e, total=False):
    for name in (("device_time_total", "cuda_time_total") if total else ("self_device_time_total", "self_cuda_time_total")):
        v = getattr(e, name, None)
        if v is not None:
            return float(v)
    return 0.0


def summarise(prof, steps, wall_s, label):
    events = prof.key_averages()
    kernels = [e for e in events if _dev(e) > 0]
    nccl = sum(_dev(e) for e in kernels if "nccl" in e.key.lower())
    mem = sum(_dev(e) for e in kernels if e.key.lower().startswith(("memcpy", "memset")) or "Memcpy" in e.key
              or "Memset" in e.key)
    compute = sum(_dev(e) for e in kernels) - nccl - mem
    step_ms = wall_s * 1e3 / steps
    lines = [f"== {label}: {steps} steps profiled, {step_ms:.2f} ms/step (host clock, synchronized)",
             f"   GPU per step: compute kernels {compute / 1e3 / steps:.2f} ms, NCCL {nccl / 1e3 / steps:.2f} ms, "
             f"memcpy/memset {mem / 1e3 / steps:.2f} ms; compute stream idle ~{max(0.0, 1 - compute / 1e3 / steps / step_ms):.1%}"
             f" of the step"]
    named = {}
    for e in events:
        for key in ("DistributedDataParallel.forward", "Optimizer.step", "Optimizer.zero_grad", "nccl:all_reduce",
                    "gloo:all_reduce",
                    "autograd::engine::evaluate_function", "aten::copy_", "aten::to", "enumerate(DataLoader)"):
            if e.key.startswith(key):
                n = named.setdefault(key, [0.0, 0])
                n[0] += e.cpu_time_total
                n[1] += e.count
    if named:
        lines.append("   host time per step (CPU total incl. children, ms): " + ", ".join(
            f"{k} {v[0] / 1e3 / steps:.2f} ({v[1] // max(1, steps)}/step)" for k, v in sorted(named.items())))
    if kernels:
        for key in ("self_device_time_total", "self_cuda_time_total"):
            try:
                lines.append(events.table(sort_by=key, row_limit=12, max_name_column_width=60))
                break
            except Exception as e:  # pragma: no cover - the key's name differs between torch versions
                err = e
        else:
            lines.append(f"   (no CUDA table: {err})")
    try:
        lines.append(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))
    except Exception as e:  # pragma: no cover
        lines.append(f"   (no CPU table: {e})")
    return "\n".join(lines) + "\n"


def main():
    argv = sys.argv[1:]
    i = argv.index("--")
    p = argparse.ArgumentParser()
    p.add_argument("--at", type=int, default=20)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--out", required=True)
    p.add_argument("--label", default="")
    opts = p.parse_args(argv[:i])
    script, args = os.path.abspath(argv[i + 1]), argv[i + 2:]
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    rank0 = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0"
    state = {"n": 0, "prof": None, "t": 0.0, "clock": None}

    def hook(optimizer, a, k):
        if state["clock"] is None:
            state["clock"] = id(optimizer)
        if id(optimizer) != state["clock"] or not rank0:
            return
        state["n"] += 1
        cuda = torch.cuda.is_available()
        if state["n"] == opts.at:
            acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
            state["prof"] = torch.profiler.profile(activities=acts)
            if cuda:
                torch.cuda.synchronize()
            state["prof"].__enter__()
            state["t"] = time.perf_counter()
        elif state["n"] == opts.at + opts.steps and state["prof"] is not None:
            if cuda:
                torch.cuda.synchronize()
            wall = time.perf_counter() - state["t"]
            state["prof"].__exit__(None, None, None)
            with open(opts.out, "w") as f:
                f.write(summarise(state["prof"], opts.steps, wall, opts.label or os.path.basename(script)))
            state["prof"] = None

    register_optimizer_step_post_hook(hook)
    sys.argv = [script] + args
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
