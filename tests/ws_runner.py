"""Runs a script as `__main__` (argv: SCRIPT [ARGS...]) and then reports the world size it trained in.

Printed once, by global rank 0 (or by every process when no process group was started):
`WORLD_SIZE_SEEN=<n>`. The whole-script tests use it to tell a real 2-process run from two processes that
each trained alone.
"""
import os
import runpy
import sys

_SEEN = None  # (rank, world size) when the script (or PTM153's teardown) destroyed the process group


def _record_at_teardown() -> None:
    """The migrated scripts tear the group down at their end (PTM153): keep what it was, for `_report`."""
    try:
        import torch.distributed as dist
        from torch.distributed import distributed_c10d
    except Exception:
        return
    original = dist.destroy_process_group

    def destroy_process_group(*args, **kwargs):
        global _SEEN
        if dist.is_initialized() and not args and not kwargs.get("group"):
            _SEEN = (dist.get_rank(), dist.get_world_size())
        return original(*args, **kwargs)

    dist.destroy_process_group = destroy_process_group
    distributed_c10d.destroy_process_group = destroy_process_group


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
        if _SEEN is not None:
            if _SEEN[0] == 0:
                print(f"WORLD_SIZE_SEEN={_SEEN[1]}", flush=True)
            return
    except Exception as e:  # report, do not hide, a broken process group
        print(f"WORLD_SIZE_SEEN=error {e!r}", flush=True)
        return
    print("WORLD_SIZE_SEEN=1", flush=True)


def main() -> None:
    script = os.path.abspath(sys.argv[1])
    sys.argv = [script] + sys.argv[2:]
    sys.path.insert(0, os.path.dirname(script))
    _record_at_teardown()
    # kept until os._exit: freeing a flat script's set-up model here, after a destroy_process_group(), runs gloo's
    # group destructor holding the GIL, which can wait forever for a worker thread (seen in CI; PTM153's docs)
    script_globals = runpy.run_path(script, run_name="__main__")  # noqa: F841
    _report()
    # The migrated scripts leave the process group to the framework; under load gloo's teardown at interpreter
    # exit can abort ("terminate called without an active exception") after all the work is done. The test
    # judges the work, so end here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
