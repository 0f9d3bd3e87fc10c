"""Verify check l's recording, in the runner's process: the lines a script prints after an evaluation, with every
evaluation given the same weights in every run.

Installed only when ``PTM_VERIFY_EVAL_REFERENCE=1`` (verify sets it for check l's two runs, every rank inherits it):

* a global module forward pre-hook / hook pair sees the top-level forwards of modules with parameters. A forward
  under ``torch.no_grad()`` or in eval mode evaluates: the module's parameters are put aside and replaced, in place,
  by reference values that depend only on their shapes (a fixed generator: the same whichever module is called,
  `model`, its wrapper or a submodule), and its floating buffers (BatchNorm's running statistics) by ones, so every
  name for the module (the wrapper, ``model.module``) sees them.
  The next forward with gradients on in training mode gives every module its own values back: training itself is
  not changed. The reference values are not the script's (the initial weights of N processes may differ from one
  process's where preparing a loader draws random numbers first); they are the same in every run.
* ``sys.stdout`` is wrapped: each complete line written while the last top-level forward evaluated is recorded.
* With ``PTM_VERIFY_EVAL_JITTER=1`` as well (check l's control run of the original), every top-level training
  forward draws one number from the global generator and its tensor outputs are scaled by a little noise from a
  private one: what the script prints from its training (a loss) or from the global generator (samples drawn from
  noise) changes, what it prints from its evaluation does not. Check l compares only the numbers that stay.

The original on one process and the migration on N processes then print their metrics for the same weights, whatever
their training did; check l compares rank 0's lines with the original's.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, List

ENV_EVAL_REFERENCE = "PTM_VERIFY_EVAL_REFERENCE"
ENV_EVAL_JITTER = "PTM_VERIFY_EVAL_JITTER"
MAX_LINES = 500


class _State:
    def __init__(self) -> None:
        self.depth = 0
        self.evaluating = False
        self.kept: Dict[int, tuple] = {}  # id(tensor) -> (tensor, its own value) while the reference is in
        self.lines: List[str] = []
        self.partial = ""
        self.top = None  # the top-level module whose forward runs, when it trains
        self.jitter = None  # the private generator of the control run


_STATE = _State()


def _reference(t):
    """The reference value of a parameter: a fixed draw for its shape, scaled by its fan-in."""
    import torch

    seed = 7919
    for d in t.shape:
        seed = (seed * 31 + int(d)) % (2 ** 31)
    g = torch.Generator().manual_seed(seed)
    value = torch.randn(tuple(t.shape), generator=g)
    value = value / (t.shape[-1] ** 0.5) if t.dim() >= 2 else value * 0.1
    return value.to(device=t.device, dtype=t.dtype)


def _pre_hook(module, args) -> None:
    s = _STATE
    s.depth += 1
    if s.depth != 1:
        return
    import torch

    params = list(module.parameters())
    if not params:
        return  # a loss module or a parameter-free helper
    training = module.training and torch.is_grad_enabled()  # read before the no_grad block below
    with torch.no_grad():
        if training:
            s.evaluating = False
            s.top = module
            if s.jitter is not None:
                torch.rand(1)  # the global generator moves on: what the script draws from it changes
            for t, own in s.kept.values():  # back to training: every module gets its own values back
                t.copy_(own)
            s.kept.clear()
            return
        s.evaluating = True
        for p in params:
            if id(p) not in s.kept:
                s.kept[id(p)] = (p, p.detach().clone())
                p.copy_(_reference(p))
        for b in module.buffers():
            if b.is_floating_point() and id(b) not in s.kept:
                s.kept[id(b)] = (b, b.detach().clone())
                b.fill_(1.0)


def _hook(module, args, output):
    s = _STATE
    s.depth = max(0, s.depth - 1)
    if s.depth == 0 and s.jitter is not None and module is s.top:
        s.top = None
        return _jittered(output)
    return None


def _jittered(output):
    import torch

    def one(t):
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            noise = torch.randn(tuple(t.shape), generator=_STATE.jitter).to(device=t.device, dtype=t.dtype)
            return t * (1 + 0.05 * noise)
        return t

    if isinstance(output, torch.Tensor):
        return one(output)
    if isinstance(output, (tuple, list)):
        return type(output)(one(t) for t in output)
    if isinstance(output, dict):
        return type(output)({k: one(v) for k, v in output.items()}) if type(output) is dict else output
    return output


class _Lines:
    """sys.stdout as it was, recording the complete lines written while the script evaluates."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        s = _STATE
        if s.evaluating or s.partial:
            s.partial += text
            *done, s.partial = s.partial.split("\n")
            for line in done:
                if line.strip() and len(s.lines) < MAX_LINES:
                    s.lines.append(line)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def install() -> None:
    if os.environ.get(ENV_EVAL_REFERENCE) != "1":
        return
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    if os.environ.get(ENV_EVAL_JITTER) == "1":
        import torch

        _STATE.jitter = torch.Generator().manual_seed(104729)
    register_module_forward_pre_hook(_pre_hook)
    try:
        register_module_forward_hook(_hook, always_call=True)
    except TypeError:  # older torch
        register_module_forward_hook(_hook)
    sys.stdout = _Lines(sys.stdout)


def record() -> Dict[str, Any]:
    """What the run printed after its evaluations (empty when not installed)."""
    if os.environ.get(ENV_EVAL_REFERENCE) != "1":
        return {}
    return {"eval_lines": list(_STATE.lines)}
