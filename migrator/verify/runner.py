"""Runs a training script, unchanged, inside a verify subprocess and records what it does.

    python -m migrator.verify.runner --steps K --out DIR [--single-device] -- script.py ARGS...

The script runs through runpy as ``__main__`` with ``sys.argv = [script.py, ARGS...]``, its folder first on
``sys.path`` and as the working directory (with ``PTM_VERIFY_KEEP_CWD=1``, verify ``--cwd``, the directory it was
started in instead). Nothing in it is edited; the runner only observes:

* ``torch.optim`` global step post-hook: counts optimizer steps (the clock is the first optimizer that steps, so
  a wrapper optimizer that steps an inner one counts once); after step K it writes the results and ends the
  process with ``os._exit(0)`` (no atexit handler or process-group teardown can hang it);
* ``Fabric.backward``, ``Accelerator.backward`` and ``torch.Tensor.backward``: the loss of every backward call
  (the outermost call only, so ``fabric.backward(loss)`` is recorded once, with the value the user passed);
* a global module forward pre-hook / hook pair: the first tensor input of the first top-level training forward of
  each step is hashed (for the sharding check) and its first dimension counted as samples; the top-level modules
  with parameters are the models whose parameters are checksummed after the last step;
* ``open`` / ``io.open`` in a writing mode (so pathlib, numpy, PIL and matplotlib too), ``torch.save``, a
  SummaryWriter's log folder and ``wandb.init``: the files the process writes, each with the script line that wrote
  it (check k); writes inside ``fabric.save`` / ``accelerator.save`` are marked exempt.

Fabric started with ``devices=N`` re-launches the script for ranks 1..N-1 with ``sys.argv`` (or ``-m
__main__.__spec__.name``). Under runpy ``__main__.__spec__`` is None, so Lightning would start the bare script and
those ranks would go unobserved: the runner replaces Lightning's ``_basic_subprocess_cmd`` so that the children
re-enter this runner with the same options. The options also travel in the environment (PTM_VERIFY_*), for any
launcher that re-runs the script by path.

The record also says whether a training forward ran under autocast (its dtype) and the models' parameter dtypes,
from which verify sets check a's tolerance. With ``PTM_VERIFY_DETERMINISTIC=1`` (verify sets it on CUDA) the runner
turns on deterministic kernels before the script starts.

Each process writes ``DIR/rank{R}-pid{P}.json`` (R from torch.distributed when initialized, else $RANK, else 0).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import runpy
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

ENV_STEPS = "PTM_VERIFY_STEPS"
ENV_OUT = "PTM_VERIFY_OUT"
ENV_SINGLE = "PTM_VERIFY_SINGLE_DEVICE"
ENV_DETERMINISTIC = "PTM_VERIFY_DETERMINISTIC"  # "1": deterministic kernels (set by verify, inherited by every rank)
MAX_WRITES = 10000  # files recorded per process for check k: a script writing more keeps its first 10000
ENV_KEEP_CWD = "PTM_VERIFY_KEEP_CWD"  # "1": the script runs in the directory it was started in (verify --cwd)


class Recorder:
    def __init__(self, steps: int, out: str, child_cmd: List[str], single_device: bool):
        self.max_steps = steps
        self.out = out
        self.child_cmd = child_cmd  # the command that re-enters the runner, without the script arguments
        self.single_device = single_device
        self.t0 = time.perf_counter()
        self.steps = 0
        self.clock_optimizer: Optional[int] = None
        self.losses: List[Dict[str, Any]] = []  # {"step": s, "loss": x}
        self.batch_hashes: Dict[int, str] = {}
        self.samples: Dict[int, int] = {}
        # a step's batch is the input of the last training forward before its first backward; until that backward,
        # the step's first forward stands in (scripts whose backward is not observed). An evaluation forward on
        # the same test tensor on every rank, between one step and the next (MorvanZhou's 502_GPU.py), is not it
        self.provisional: Set[int] = set()
        self.last_forward: Optional[Tuple[int, str, int]] = None
        self.step_times: List[float] = []
        self.models: Dict[int, Any] = {}
        self.depth = 0
        self.in_backward = 0
        self.written = False
        self.scaled: Dict[int, Any] = {}  # id(scaled loss) -> (scaled, loss), from GradScaler.scale
        self.autocast_dtype: Optional[str] = None  # "bfloat16" / "float16": autocast seen in a training forward
        self.first_lr: Optional[float] = None  # the clock optimizer's learning rate at its first and last step
        self.last_lr: Optional[float] = None
        self.init_param_hash: Optional[str] = None  # the models' parameters at the first training forward
        self.noise = hashlib.sha1()  # torch.randn/rand/... drawn after the first optimizer step (in the loop)
        self.noise_draws = 0
        self.writes: Dict[str, Dict[str, Any]] = {}  # absolute path -> first write: line, how, exempt (check k)
        self.user_dirs: List[str] = []  # the script's folder and the start directory: files there are the script's
        self.script = ""
        self.framework_saving = 0  # inside fabric.save / accelerator.save: the framework decides who writes
        self.printed: List[str] = []  # this process's standard-output lines (check e tells the ranks apart by them)

    # ---- hooks -------------------------------------------------------------------------------------------------
    def record_loss(self, tensor) -> None:
        # `scaler.scale(loss).backward()`: record the loss the user computed, not the scaled one
        unscaled = self.scaled.get(id(tensor))
        if unscaled is not None and unscaled[0] is tensor:
            tensor = unscaled[1]
        try:
            t = tensor.detach()
            value = float(t.float().mean()) if t.numel() != 1 else float(t.float())
        except Exception:
            return
        if self.steps < self.max_steps:
            self.losses.append({"step": self.steps + 1, "loss": value})

    def wrap_teardown(self) -> None:
        """Record the rank and world size right before the script (or PTM153's teardown) destroys the process group:
        a script without an optimizer step (manual SGD) is otherwise asked at its end, when the group is gone, and
        check b read world size 1."""
        try:
            import torch.distributed as dist
            from torch.distributed import distributed_c10d
        except Exception:
            return
        original = getattr(dist, "destroy_process_group", None)
        if original is None:
            return
        recorder = self

        def destroy_process_group(*args, **kwargs):
            if dist.is_initialized():
                recorder.last_rank_world = _rank_world(None)
            return original(*args, **kwargs)

        dist.destroy_process_group = destroy_process_group
        distributed_c10d.destroy_process_group = destroy_process_group

    def wrap_scaler(self, torch) -> None:
        """Remember which tensor GradScaler.scale made from which loss (only the latest few)."""
        try:
            from torch.amp.grad_scaler import GradScaler
        except ImportError:  # pragma: no cover - older torch
            return
        original = GradScaler.scale
        if getattr(original, "_ptm_verify", False):
            return
        rec = self

        def scale(scaler, outputs):
            result = original(scaler, outputs)
            if isinstance(outputs, torch.Tensor) and result is not outputs:
                if len(rec.scaled) > 16:
                    rec.scaled.clear()
                rec.scaled[id(result)] = (result, outputs)
            return result

        scale._ptm_verify = True
        GradScaler.scale = scale

    def wrap_draws(self, torch) -> None:
        """Hash what torch's random functions return once the first optimizer step is done (the training loop)."""
        rec = self
        for name in ("randn", "rand", "randint", "randn_like", "rand_like", "randint_like", "randperm", "normal",
                     "bernoulli", "multinomial"):
            original = getattr(torch, name, None)
            if original is None or getattr(original, "_ptm_verify", False):
                continue

            def draw(*args, __original=original, **kwargs):
                out = __original(*args, **kwargs)
                # an explicit generator (a sampler's) is not the global RNG the check is about
                if rec.steps >= 1 and isinstance(out, torch.Tensor) and kwargs.get("generator") is None:
                    try:
                        rec.noise.update(_tensor_bytes(out))
                        rec.noise_draws += 1
                    except Exception:
                        pass
                return out

            draw._ptm_verify = True
            draw.__name__ = name
            setattr(torch, name, draw)

    def wrap_backward(self, owner, name: str, loss_arg: int) -> None:
        original = getattr(owner, name, None)
        if original is None or getattr(original, "_ptm_verify", False):
            return
        rec = self

        def backward(*args, **kwargs):
            outer = rec.in_backward == 0
            if outer:
                rec.commit_batch()
                loss = args[loss_arg] if len(args) > loss_arg else kwargs.get("loss", kwargs.get("tensor"))
                if loss is not None:
                    rec.record_loss(loss)
            rec.in_backward += 1
            try:
                return original(*args, **kwargs)
            finally:
                rec.in_backward -= 1

        backward._ptm_verify = True
        backward.__name__ = getattr(original, "__name__", name)
        backward.__doc__ = getattr(original, "__doc__", None)
        setattr(owner, name, backward)

    def forward_pre_hook(self, module, args) -> None:
        self.depth += 1
        if self.autocast_dtype is None and self.steps < self.max_steps:
            # at any depth: a framework enters its autocast inside the wrapper's forward, below the top-level call
            self.autocast_dtype = _autocast_dtype()
        if self.depth != 1:
            return
        import torch

        if not (module.training and torch.is_grad_enabled()):
            return
        has_params = False
        for _ in module.parameters():
            has_params = True
            break
        if not has_params:
            return  # a loss module or a parameter-free helper: not a model
        self.models.setdefault(id(module), module)
        if self.init_param_hash is None:
            try:
                h = hashlib.sha1()
                for p in module.parameters():
                    h.update(_tensor_bytes(p))
                self.init_param_hash = h.hexdigest()
            except Exception:
                self.init_param_hash = "unreadable"
        step = self.steps + 1
        if (step in self.batch_hashes and step not in self.provisional) or step > self.max_steps:
            return
        first = _first_tensor(args)
        if first is None:
            return
        self.last_forward = (step, _tensor_hash(first), int(first.shape[0]) if first.dim() > 0 else 1)
        if step not in self.batch_hashes:
            self.batch_hashes[step], self.samples[step] = self.last_forward[1:]
            self.provisional.add(step)

    def commit_batch(self) -> None:
        """At a step's first backward: the last training forward before it gave the step's batch."""
        last = self.last_forward
        if last is not None and last[0] == self.steps + 1 and last[0] in self.provisional:
            self.batch_hashes[last[0]], self.samples[last[0]] = last[1:]
            self.provisional.discard(last[0])

    def forward_hook(self, module, args, output) -> None:
        self.depth = max(0, self.depth - 1)

    def step_post_hook(self, optimizer, args, kwargs) -> None:
        if self.clock_optimizer is None:
            self.clock_optimizer = id(optimizer)
        if id(optimizer) != self.clock_optimizer:
            return
        self.steps += 1
        try:
            lr = float(optimizer.param_groups[0]["lr"])
            self.first_lr = lr if self.first_lr is None else self.first_lr
            self.last_lr = lr
        except Exception:
            pass
        self.step_times.append(time.perf_counter() - self.t0)
        # the script may tear its process group down before it ends (destroy_process_group): keep what it was
        self.last_rank_world = _rank_world(None)
        if self.steps >= self.max_steps:
            self.write("stopped")
            _flush()
            os._exit(0)

    # ---- files written (check k) --------------------------------------------------------------------------------
    def record_write(self, path, how: str) -> None:
        """Note that this process opened `path` for writing. Counted: a path under the script's folder or the start
        directory, or one the script's own code names (its frame calls the writer); a library's cache elsewhere
        (torch.compile's, a hub download's) is not the script's output. Event files count as their log folder (their
        names hold the pid, but two writers in one folder double the curves)."""
        try:
            p = os.path.abspath(os.fsdecode(os.fspath(path)))
        except TypeError:
            return  # a file object or a descriptor: its opener was recorded
        if p.startswith(("/dev/", "/proc/")) or p == os.devnull or p.startswith(self.out + os.sep):
            return
        folder, name = os.path.split(p)
        if name.startswith("events.out.tfevents."):
            p = os.path.join(folder, "events.out.tfevents.*")
        if p in self.writes or len(self.writes) >= MAX_WRITES:
            return
        frame, caller, user, script_line = sys._getframe(2), None, None, None
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename != __file__:
                caller = caller or filename
                if user is None and self._is_user(filename):
                    user = f"{os.path.basename(filename)}:{frame.f_lineno}"
                if filename == self.script:
                    script_line = f"{os.path.basename(filename)}:{frame.f_lineno}"
                    break
            frame = frame.f_back
        if not (self._is_user(p) or (caller and self._is_user(caller))):
            return
        line = user or "?"
        if script_line and script_line != line:
            line = f"{line}, called from {script_line}"
        self.writes[p] = {"line": line, "how": how, "exempt": self.framework_saving > 0, "step": self.steps}

    @staticmethod
    def own_copy(path, mode: str) -> None:
        """verify stages the script's folder with links to the user's files (all but the .py files): before a write
        opens such a link, it becomes a file of the staging folder (a copy where the mode keeps the content), so the
        write never reaches the user's file."""
        try:
            p = os.fsdecode(os.fspath(path))
        except TypeError:
            return  # a file object or a descriptor
        try:
            if not os.path.islink(p):
                return
            target = os.path.realpath(p)
            os.unlink(p)
            if ("a" in mode or "+" in mode) and os.path.isfile(target):
                import shutil
                shutil.copyfile(target, p)
        except OSError:
            pass

    def _is_user(self, path: str) -> bool:
        return "site-packages" not in path and any(path.startswith(d + os.sep) for d in self.user_dirs)

    def wrap_writes(self, torch, sources: str) -> None:
        """Record the files this process writes: `open` (builtins and io, so pathlib, numpy, PIL and matplotlib
        too) in a mode that writes, `torch.save` (its zip writer does not go through `open`), a SummaryWriter's log
        folder (its event file is written later, by a thread), a wandb run."""
        import builtins
        import io

        rec = self
        original_open = io.open
        if not getattr(builtins.open, "_ptm_verify", False):
            def open_(file, *args, **kwargs):
                mode = args[0] if args else kwargs.get("mode", "r")
                if isinstance(mode, str) and ("w" in mode or "a" in mode or "x" in mode or "+" in mode):
                    rec.own_copy(file, mode)
                    rec.record_write(file, "open")
                return original_open(file, *args, **kwargs)

            open_._ptm_verify = True
            open_.__doc__ = original_open.__doc__
            builtins.open = io.open = open_
        for owner in (torch, torch.serialization):
            original = getattr(owner, "save", None)
            if original is None or getattr(original, "_ptm_verify", False):
                continue

            def save(obj, f, *args, __original=original, **kwargs):
                rec.own_copy(f, "w")
                rec.record_write(f, "torch.save")
                return __original(obj, f, *args, **kwargs)

            save._ptm_verify = True
            save.__doc__ = original.__doc__
            owner.save = save
        if "SummaryWriter" in sources:
            for mod in ("torch.utils.tensorboard.writer", "tensorboardX.writer"):
                try:
                    cls = __import__(mod, fromlist=["SummaryWriter"]).SummaryWriter
                except Exception:
                    continue
                self._wrap_writer(cls)
        if "wandb" in sources:
            try:
                import wandb
            except Exception:
                return
            init = wandb.init
            if not getattr(init, "_ptm_verify", False):
                def wandb_init(*args, **kwargs):
                    if kwargs.get("mode") != "disabled":
                        rec.record_write(os.path.join(kwargs.get("dir") or os.getcwd(), "wandb", "<run>"),
                                         "wandb.init")
                    return init(*args, **kwargs)

                wandb_init._ptm_verify = True
                wandb.init = wandb_init

    def _wrap_writer(self, cls) -> None:
        original = cls.__init__
        if getattr(original, "_ptm_verify", False):
            return
        rec = self

        def __init__(writer, *args, **kwargs):
            original(writer, *args, **kwargs)
            try:
                folder = writer.get_logdir()
            except Exception:
                folder = kwargs.get("log_dir") or (args[0] if args else "runs")
            rec.record_write(os.path.join(folder, "events.out.tfevents.x"), "SummaryWriter")

        __init__._ptm_verify = True
        cls.__init__ = __init__

    def wrap_framework_save(self, owner, name: str) -> None:
        """Files written inside the framework's own save are exempt from check k: it decides which rank writes."""
        original = getattr(owner, name, None)
        if original is None or getattr(original, "_ptm_verify", False):
            return
        rec = self

        def save(*args, **kwargs):
            rec.framework_saving += 1
            try:
                return original(*args, **kwargs)
            finally:
                rec.framework_saving -= 1

        save._ptm_verify = True
        save.__name__ = getattr(original, "__name__", name)
        save.__doc__ = getattr(original, "__doc__", None)
        setattr(owner, name, save)

    # ---- results -----------------------------------------------------------------------------------------------
    def checksum(self) -> Dict[str, Any]:
        import torch

        seen = set()
        total = 0.0
        count = 0
        dtypes = set()
        h = hashlib.sha1()
        with torch.no_grad():
            for module in self.models.values():
                for p in module.parameters():
                    if id(p) in seen:
                        continue
                    seen.add(id(p))
                    t = p.detach()
                    try:
                        full = t.full_tensor() if hasattr(t, "full_tensor") else t  # DTensor (FSDP2)
                    except Exception:
                        full = t
                    dtypes.add(str(t.dtype).replace("torch.", ""))
                    total += float(full.double().sum())
                    count += full.numel()
                    h.update(_tensor_bytes(full))
        return {"param_checksum": total, "param_hash": h.hexdigest(), "param_count": count,
                "param_dtypes": sorted(dtypes)}

    def write(self, status: str, error: Optional[str] = None, exit_code: Optional[int] = None) -> None:
        if self.written:
            return
        self.written = True
        rank, world = _rank_world(getattr(self, "last_rank_world", None))
        data: Dict[str, Any] = {
            "rank": rank,
            "world_size": world,
            "env_rank": os.environ.get("RANK"),
            "env_world_size": os.environ.get("WORLD_SIZE"),
            "pid": os.getpid(),
            "status": status,
            "error": error,
            "exit_code": exit_code,
            "steps": self.steps,
            "max_steps": self.max_steps,
            "losses": [x["loss"] for x in self.losses],
            "loss_steps": [x["step"] for x in self.losses],
            "batch_hashes": [self.batch_hashes.get(s) for s in range(1, self.steps + 1)],
            "samples_per_step": [self.samples.get(s, 0) for s in range(1, self.steps + 1)],
            "samples": sum(self.samples.get(s, 0) for s in range(1, self.steps + 1)),
            "step_times": self.step_times,
            "elapsed": time.perf_counter() - self.t0,
            "models": sorted({type(m).__name__ for m in self.models.values()}),
            "autocast_dtype": self.autocast_dtype,
            "deterministic": os.environ.get(ENV_DETERMINISTIC) == "1",
            "first_lr": self.first_lr,
            "last_lr": self.last_lr,
            "init_param_hash": self.init_param_hash,
            "noise_hash": self.noise.hexdigest() if self.noise_draws else None,
            "noise_draws": self.noise_draws,
            "writes": [dict(w, path=p) for p, w in self.writes.items()],
            "stdout_lines": self.printed[:_MAX_PRINTED],
        }
        from migrator.verify import evaluation

        data.update(evaluation.record())
        try:
            data.update(self.checksum())
        except Exception as e:  # pragma: no cover - never lose the rest of the record
            data.update({"param_checksum": None, "param_hash": None, "param_count": 0, "checksum_error": repr(e)})
        os.makedirs(self.out, exist_ok=True)
        path = os.path.join(self.out, f"rank{rank}-pid{os.getpid()}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, default=_json_default)
        os.replace(tmp, path)

    # ---- installation ------------------------------------------------------------------------------------------
    def install(self, sources: str) -> None:
        import torch
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
        from torch.optim.optimizer import register_optimizer_step_post_hook

        register_optimizer_step_post_hook(self.step_post_hook)
        from migrator.verify import evaluation

        evaluation.install()  # check l's runs only (PTM_VERIFY_EVAL_REFERENCE)
        register_module_forward_pre_hook(self.forward_pre_hook)
        try:
            register_module_forward_hook(self.forward_hook, always_call=True)
        except TypeError:  # older torch
            register_module_forward_hook(self.forward_hook)
        self.wrap_backward(torch.Tensor, "backward", 0)
        self.wrap_scaler(torch)
        self.wrap_teardown()
        self.wrap_draws(torch)
        self.wrap_writes(torch, sources)
        if "lightning" in sources:
            self._patch_lightning()
        if "accelerate" in sources:
            try:
                import accelerate

                self.wrap_backward(accelerate.Accelerator, "backward", 1)
                for name in ("save", "save_state", "save_model"):
                    self.wrap_framework_save(accelerate.Accelerator, name)
            except Exception:
                pass

    def _patch_lightning(self, packages: Sequence[str] = ("lightning.fabric", "lightning_fabric")) -> None:
        for pkg in packages:
            try:
                fabric_mod = __import__(pkg, fromlist=["Fabric"])
                launcher = __import__(pkg + ".strategies.launchers.subprocess_script", fromlist=["x"])
            except Exception:
                continue
            Fabric = fabric_mod.Fabric
            self.wrap_backward(Fabric, "backward", 1)
            self.wrap_framework_save(Fabric, "save")
            rec = self

            def child_cmd():
                return list(rec.child_cmd) + sys.argv[1:]

            if hasattr(launcher, "_basic_subprocess_cmd"):
                launcher._basic_subprocess_cmd = child_cmd
            if self.single_device and not getattr(Fabric.__init__, "_ptm_verify", False):
                original_init = Fabric.__init__

                # original_init bound now: a closure would see the last package's __init__ (lightning_fabric's,
                # where both are installed), and its strategy checks reject lightning.fabric's strategy objects
                def __init__(fabric_self, *args, _original_init=original_init, **kwargs):
                    # the single-process parity run: whatever the script asks for, one device, no launch
                    kwargs["devices"] = 1
                    kwargs["num_nodes"] = 1
                    if isinstance(kwargs.get("strategy"), str):
                        kwargs["strategy"] = "auto"
                    _original_init(fabric_self, *args, **kwargs)

                __init__._ptm_verify = True
                Fabric.__init__ = __init__


def _autocast_dtype() -> Optional[str]:
    """The dtype of the autocast region the caller is in ("bfloat16", "float16"), or None outside one."""
    import torch

    for device in ("cuda", "cpu"):
        try:
            if torch.is_autocast_enabled(device):
                return str(torch.get_autocast_dtype(device)).replace("torch.", "")
        except (TypeError, AttributeError, RuntimeError):  # older torch: no device argument
            try:
                if device == "cuda" and torch.is_autocast_enabled():
                    return str(torch.get_autocast_gpu_dtype()).replace("torch.", "")
            except Exception:
                pass
    return None


def _deterministic() -> None:
    """Deterministic kernels for this process (verify's parity runs on CUDA): cuDNN picks a deterministic
    convolution algorithm without benchmarking, cuBLAS a fixed workspace, and operations that have a deterministic
    implementation use it (those that have none still run, with a warning). Before the script runs, so before CUDA
    starts: CUBLAS_WORKSPACE_CONFIG is read when cuBLAS is initialised."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _first_tensor(obj, depth: int = 0):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj
    if depth > 3:
        return None
    if isinstance(obj, (list, tuple)):
        for x in obj:
            t = _first_tensor(x, depth + 1)
            if t is not None:
                return t
    if isinstance(obj, dict):
        for x in obj.values():
            t = _first_tensor(x, depth + 1)
            if t is not None:
                return t
    return None


def _tensor_bytes(t) -> bytes:
    import torch

    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if t.dtype == torch.bfloat16 or not hasattr(t, "numpy"):
        t = t.float()
    try:
        return t.numpy().tobytes()
    except Exception:
        return t.view(-1).view(torch.uint8).numpy().tobytes()


def _tensor_hash(t) -> str:
    h = hashlib.sha1()
    h.update(str(tuple(t.shape)).encode())
    h.update(str(t.dtype).encode())
    h.update(_tensor_bytes(t))
    return h.hexdigest()


_MAX_PRINTED = 5000


class _LineTee:
    """Standard output that also keeps the complete lines this process writes: ranks share one pipe, so the merged
    output cannot say which rank printed a line (check e)."""

    def __init__(self, stream, lines: List[str]):
        self._stream, self._lines, self._part = stream, lines, ""

    def write(self, text):
        n = self._stream.write(text)
        if len(self._lines) < _MAX_PRINTED and isinstance(text, str):
            *done, self._part = (self._part + text).split("\n")
            self._lines.extend(done[:_MAX_PRINTED - len(self._lines)])
        return n

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _rank_world(seen=None):
    """(rank, world size) of the process group; without one, `seen` (what it was at the last step), else the
    environment's rank and 1."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:
        pass
    if seen is not None:
        return seen
    return int(os.environ.get("RANK", "0") or 0), 1


def _json_default(o):
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    return str(o)


def _flush() -> None:
    for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            s.flush()
        except Exception:
            pass


def _sources(script: str) -> str:
    """The text of the script and its sibling modules, to decide which frameworks to patch."""
    folder = os.path.dirname(script)
    parts = []
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".py")]
    except OSError:
        names = []
    for n in [os.path.basename(script)] + names:
        try:
            with open(os.path.join(folder, n), encoding="utf-8", errors="replace") as f:
                parts.append(f.read())
        except OSError:
            pass
    return "\n".join(parts)


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        i = argv.index("--")
        own, rest = argv[:i], argv[i + 1:]
    else:
        own, rest = [], argv
    p = argparse.ArgumentParser(prog="python -m migrator.verify.runner")
    p.add_argument("--steps", type=int, default=int(os.environ.get(ENV_STEPS, "5")))
    p.add_argument("--out", default=os.environ.get(ENV_OUT))
    p.add_argument("--single-device", action="store_true", default=os.environ.get(ENV_SINGLE) == "1")
    opts = p.parse_args(own)
    if not rest or not opts.out:
        p.error("usage: --steps K --out DIR [--single-device] -- script.py [ARGS...]")
    script = os.path.abspath(rest[0])
    script_args = rest[1:]
    os.environ[ENV_STEPS] = str(opts.steps)
    os.environ[ENV_OUT] = os.path.abspath(opts.out)
    if opts.single_device:
        os.environ[ENV_SINGLE] = "1"
    child = [sys.executable, "-m", "migrator.verify.runner", "--steps", str(opts.steps), "--out",
             os.path.abspath(opts.out)] + (["--single-device"] if opts.single_device else []) + ["--", script]
    # Whole lines per write: ranks share one pipe, and an unbuffered print writes the text and the newline
    # separately, so two ranks' lines could interleave and hide a line printed by every rank (check e).
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True, write_through=False)
        except (AttributeError, ValueError):
            pass
    if os.environ.get(ENV_DETERMINISTIC) == "1":
        _deterministic()
    rec = Recorder(opts.steps, os.path.abspath(opts.out), child, opts.single_device)
    rec.script = script
    # files under these are the script's (a start directory of / or home would take in every cache)
    rec.user_dirs = sorted({d for d in (os.path.dirname(script), os.getcwd())
                            if d not in ("/", os.path.expanduser("~"))})
    rec.install(_sources(script))
    sys.stdout = _LineTee(sys.stdout, rec.printed)

    folder = os.path.dirname(script)
    here = os.getcwd()
    if os.environ.get(ENV_KEEP_CWD) != "1":  # "1": as `cd DIR && python path/to/script.py` (verify --cwd DIR)
        os.chdir(folder)
    if sys.path and sys.path[0] in ("", here, os.getcwd(), folder):  # python puts the script's folder first
        sys.path[0] = folder
    else:
        sys.path.insert(0, folder)
    sys.argv = [script] + script_args
    try:
        # kept until os._exit: freeing a flat script's set-up model here, after its own destroy_process_group(),
        # runs gloo's group destructor holding the GIL, which can wait forever for a worker thread (PTM153)
        script_globals = runpy.run_path(script, run_name="__main__")  # noqa: F841
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        rec.write("finished" if code == 0 else "exit", error=None if code == 0 else str(e.code), exit_code=code)
        raise
    except BaseException as e:
        rec.write("error", error=f"{type(e).__name__}: {e}", exit_code=1)
        raise
    rec.write("finished", exit_code=0)
    # End here, like the step limit does: a process group the script left open can abort the interpreter's
    # teardown ("terminate called without an active exception") after all the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    # run this module's functions under its importable name: runpy puts the script in sys.modules["__main__"], and
    # torch.compile, tracing the global forward hooks, looks their globals up by module name (it found the script's)
    from migrator.verify import runner as _runner

    _runner.main()
