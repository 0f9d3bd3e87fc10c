"""Runs a script as `__main__` (argv: SCRIPT [ARGS...]) and then reports the world size it trained in.

Printed once, by global rank 0 (or by every process when no process group was started):
`WORLD_SIZE_SEEN=<n>`. The whole-script tests use it to tell a real 2-process run from two processes that
each trained alone.
"""
import os
import runpy
import sys


def _accelerate_world():
    """(rank, world) as Accelerate's state sees it, when the script made one; None otherwise.

    Under torchrun on a CPU-only machine a plain `Accelerator()` starts a process group and then trains
    each process alone, so the process group's size is not the answer for Accelerate.
    """
    if "accelerate" not in sys.modules:
        return None
    from accelerate.state import PartialState
    if not PartialState._shared_state:
        return None
    state = PartialState()
    return state.process_index, state.num_processes


def _report() -> None:
    try:
        acc = _accelerate_world()
        if acc is not None:
            if acc[0] == 0:
                print(f"WORLD_SIZE_SEEN={acc[1]}", flush=True)
            return
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            if dist.get_rank() == 0:
                print(f"WORLD_SIZE_SEEN={dist.get_world_size()}", flush=True)
            return
    except Exception as e:  # report, do not hide, a broken process group
        print(f"WORLD_SIZE_SEEN=error {e!r}", flush=True)
        return
    print("WORLD_SIZE_SEEN=1", flush=True)


def main() -> None:
    script = os.path.abspath(sys.argv[1])
    sys.argv = [script] + sys.argv[2:]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")
    _report()
    # The migrated scripts leave the process group to the framework; under load gloo's teardown at interpreter
    # exit can abort ("terminate called without an active exception") after all the work is done. The test
    # judges the work, so end here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
