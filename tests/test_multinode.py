"""Beyond one machine: a migrated script runs as 2 nodes x 1 process, started by two torchrun agents that meet
through a c10d rendezvous on 127.0.0.1 (what `torchrun --nnodes 2 ...` does across real machines)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from migrator import Options, migrate

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "train.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_two_nodes_one_process_each(target, tmp_path):
    options = Options() if target == "fabric" else Options(accelerator="cpu")  # Fabric: counts from torchrun
    result = migrate(SCRIPT.read_text(), target, options)
    assert result.error is None
    (tmp_path / "train.py").write_text(result.code)
    out = tmp_path / "obs"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    agents = []
    for node in range(2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--node_rank", str(node), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
               "--rdzv_id", f"ptm-{target}", "-m", "migrator.verify.runner", "--steps", "100000", "--out", str(out),
               "--", "train.py", "--epochs", "1"]
        agents.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, start_new_session=True))
    logs = []
    for p in agents:
        try:
            logs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in agents:
                os.killpg(q.pid, signal.SIGKILL)
            pytest.fail("the two-node run hung")
    assert all(p.returncode == 0 for p in agents), "\n".join(l[-2000:] for l in logs)
    records = [json.loads(f.read_text()) for f in sorted(out.glob("rank*.json"))]
    assert sorted(r["rank"] for r in records) == [0, 1]
    assert {r["world_size"] for r in records} == {2}
    assert records[0]["param_hash"] == records[1]["param_hash"]
    # fabric.print / accelerator.print write once per node (local rank 0): here, once on each of the 2 nodes
    steps = [l for l in "".join(logs).splitlines() if l.startswith("step ")]
    assert steps
