"""verify's one-device run patches Fabric in both packages that may provide it (lightning.fabric and the standalone
lightning_fabric, both present where pytorch-lightning is installed beside lightning), each with its own __init__.

Seen on the 2-GPU machine (2026-12-01): the patch closed over a loop variable, so lightning.fabric's Fabric ran
lightning_fabric's __init__, whose connector rejected `strategy=DDPStrategy(...)` from lightning.fabric
("You selected an invalid strategy name"); every fixture with DDP options failed checks a and e there."""
import sys
import types

from migrator.verify.runner import Recorder


def _fake_package(monkeypatch, name, calls):
    class Fabric:
        def __init__(self, *args, **kwargs):
            calls.append((name, kwargs))

        def backward(self, loss):
            pass

        def save(self, path, state):
            pass

    mod = types.ModuleType(name)
    mod.Fabric = Fabric
    launcher = types.ModuleType(name + ".strategies.launchers.subprocess_script")
    for part in (".strategies", ".strategies.launchers"):
        monkeypatch.setitem(sys.modules, name + part, types.ModuleType(name + part))
    monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, name + ".strategies.launchers.subprocess_script", launcher)
    return Fabric


def test_each_fabric_keeps_its_own_init(monkeypatch, tmp_path):
    calls = []
    first = _fake_package(monkeypatch, "ptm_fake_lightning_fabric_a", calls)
    second = _fake_package(monkeypatch, "ptm_fake_lightning_fabric_b", calls)
    rec = Recorder(steps=1, out=str(tmp_path), child_cmd=["python"], single_device=True)
    monkeypatch.setattr("migrator.verify.runner.Recorder.wrap_backward", lambda *a, **k: None)
    monkeypatch.setattr("migrator.verify.runner.Recorder.wrap_framework_save", lambda *a, **k: None)
    rec._patch_lightning(packages=("ptm_fake_lightning_fabric_a", "ptm_fake_lightning_fabric_b"))
    first(devices=2, strategy="ddp")
    second(devices=4)
    assert calls == [
        ("ptm_fake_lightning_fabric_a", {"devices": 1, "strategy": "auto", "num_nodes": 1}),
        ("ptm_fake_lightning_fabric_b", {"devices": 1, "num_nodes": 1}),
    ]
