"""The rules, in the order they run.

Why this order: facts are computed once, as names, before any rule runs, so most rules are independent.
The few orderings that matter:
- helper-params first, so later rules see the framework object in every function that receives it;
- device-selection before model/batch/tensor moves, so a rebound `device` is not mistaken for "cuda";
- model-moves before tensor-device, so a model's `.cuda()` is removed rather than retargeted;
- setup and framework-object after the expression rules, since they insert statements the others would
  otherwise revisit;
- main-guard right after framework-object, so the new object goes under the guard with the code;
- unused-device last: it deletes what the others left unused.
"""
from __future__ import annotations

from typing import Dict, List

from migrator.rules.backward import Backward
from migrator.rules.base import Context, Example, Rule
from migrator.rules.batch_moves import BatchMoves
from migrator.rules.device_selection import DeviceSelection
from migrator.rules.eval_dataset_len import ShardedMetric
from migrator.rules.framework_object import FrameworkObject
from migrator.rules.helper_params import HelperParams
from migrator.rules.main_guard import MainGuard
from migrator.rules.model_moves import ModelMoves
from migrator.rules.print_once import PrintOnce
from migrator.rules.seed import Seed
from migrator.rules.setup_dataloaders import SetupDataloaders
from migrator.rules.setup_model_optimizer import SetupModelOptimizer
from migrator.rules.tensor_moves import TensorMoves
from migrator.rules.unused_device import UnusedDevice
from migrator.rules.unsupported_constructs import NotMigrated

REGISTRY: List[Rule] = [
    HelperParams(),
    Backward(),
    PrintOnce(),
    Seed(),
    DeviceSelection(),
    ModelMoves(),
    BatchMoves(),
    TensorMoves(),
    ShardedMetric(),
    SetupModelOptimizer(),
    SetupDataloaders(),
    FrameworkObject(),
    MainGuard(),
    UnusedDevice(),
    NotMigrated(),
]

BY_CODE: Dict[str, Rule] = {r.code: r for r in REGISTRY}

__all__ = ["REGISTRY", "BY_CODE", "Context", "Example", "Rule"]
