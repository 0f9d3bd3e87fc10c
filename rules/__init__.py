"""The rules, in the order they run.

Why this order: facts are computed once, as names, before any rule runs, so most rules are independent.
The few orderings that matter:
- amp first: `scaler.scale(loss).backward()` must become `loss.backward()` before backward rewrites it;
- the DDP rules before model-moves, so `DDP(Net().to(rank))` is unwrapped before its move is dropped;
- helper-params next, so later rules see the framework object in every function that receives it;
- device-selection before model/batch/tensor moves, so a rebound `device` is not mistaken for "cuda";
- model-moves before tensor-device, so a model's `.cuda()` is removed rather than retargeted;
- setup and framework-object after the expression rules, since they insert statements the others would
  otherwise revisit;
- accumulate (PTM141) before accumulation-sync (PTM139), so a loop Accelerate accumulates itself is not also
  wrapped; both after no-sync, whose loops they leave alone, and before framework-object, which writes the
  constructor arguments they ask for (`Facts.accelerator_kwargs`); dynamo-backend likewise, and after setup so
  that it sees the model prepared;
- schedule-length after setup-dataloaders: it reads the setup lines to know which `len(...)` counts a sharded loader;
- rank-seed after setup-model-optimizer and seed: it goes after the last model setup and reads the seed;
- download-first, write-once, local-stop, collectives, checkpoints and rank-zero before framework-object: at module level
  the object goes right above the first statement that uses it, and the blocks, guards and calls they add use
  it (run after it, rank-zero put `master_process = fabric.is_global_zero` above the object: nanochat);
- input-device (PTM114) after the move rules: it acts only where the script places nothing itself;
- device-flag (PTM115) right before framework-object: it reads where the object will be created (after every rule
  that adds a use of it above) and asks PTM100 for the device (`Facts.device_choice`, shared with PTM114);
- main-guard right after framework-object, so the new object goes under the guard with the code;
- teardown after framework-object: it acts only where that rule created the object;
- unused-device last: it deletes what the others left unused.
"""
from __future__ import annotations

from typing import Dict, List

from migrator.rules.amp import Amp
from migrator.rules.backward import Backward
from migrator.rules.clipping import Clipping
from migrator.rules.closure_step import ClosureStep
from migrator.rules.ddp_environment import DdpEnvironment
from migrator.rules.ddp_wrapper import DdpWrapper
from migrator.rules.distributed_sampler import DistributedSamplerRule
from migrator.rules.no_sync import NoSync
from migrator.rules.accumulate import Accumulate
from migrator.rules.accumulation_sync import AccumulationSync
from migrator.rules.base import Context, Example, Rule
from migrator.rules.batch_moves import BatchMoves
from migrator.rules.device_flag import DeviceFlag
from migrator.rules.device_selection import DeviceSelection
from migrator.rules.download_first import DownloadFirst
from migrator.rules.dynamo_backend import DynamoBackend
from migrator.rules.local_stop import LocalStop
from migrator.rules.eval_dataset_len import ShardedMetric
from migrator.rules.framework_object import FrameworkObject
from migrator.rules.helper_params import HelperParams
from migrator.rules.input_device import InputDevice
from migrator.rules.main_guard import MainGuard
from migrator.rules.make_dirs import MakeDirs
from migrator.rules.model_moves import ModelMoves
from migrator.rules.print_once import PrintOnce
from migrator.rules.rank_seed import RankSeed
from migrator.rules.schedule_length import ScheduleLength
from migrator.rules.seed import Seed
from migrator.rules.setup_dataloaders import SetupDataloaders
from migrator.rules.setup_model_optimizer import SetupModelOptimizer
from migrator.rules.teardown import Teardown
from migrator.rules.tensor_moves import TensorMoves
from migrator.rules.unused_device import UnusedDevice
from migrator.rules.write_once import WriteOnce
from migrator.rules.checkpoints import Checkpoints
from migrator.rules.collectives import Collectives
from migrator.rules.rank_zero import RankZero
from migrator.rules.unsupported_constructs import NotMigrated
from migrator.rules.semantic_reports import SemanticReports

REGISTRY: List[Rule] = [
    Amp(),
    DdpEnvironment(),
    DdpWrapper(),
    DistributedSamplerRule(),
    NoSync(),
    Accumulate(),
    AccumulationSync(),
    Clipping(),
    ClosureStep(),
    HelperParams(),
    Backward(),
    PrintOnce(),
    Seed(),
    DeviceSelection(),
    ModelMoves(),
    BatchMoves(),
    TensorMoves(),
    InputDevice(),
    ShardedMetric(),
    SetupModelOptimizer(),
    SetupDataloaders(),
    DynamoBackend(),
    ScheduleLength(),
    RankSeed(),
    DownloadFirst(),
    WriteOnce(),
    LocalStop(),
    # collectives, then checkpoints, then rank-zero: rank-zero rewrites the guards last and checks what is
    # left under them (collectives and saves the two before could not move out); checkpoints recognise
    # guards in both the hand-written and the framework form, so they may run before it.
    Collectives(),
    Checkpoints(),
    RankZero(),
    MakeDirs(),  # after rank-zero: a folder it put under a main-process guard is left alone
    DeviceFlag(),
    FrameworkObject(),
    MainGuard(),
    Teardown(),
    UnusedDevice(),
    SemanticReports(),
    NotMigrated(),
]

BY_CODE: Dict[str, Rule] = {r.code: r for r in REGISTRY}

__all__ = ["REGISTRY", "BY_CODE", "Context", "Example", "Rule"]
