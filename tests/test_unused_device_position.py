"""PTM113's report has the line of the device it removed (a new user saw `train.py:1:1` for line 17)."""
from migrator import Options, migrate


def test_removed_device_is_reported_at_its_line():
    src = ("import torch\n\nx = torch.randn(8, 4)\n\ndevice = torch.device('cuda' if torch.cuda.is_available() "
           "else 'cpu')\nmodel = torch.nn.Linear(4, 1).to(device)\n"
           "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\nloss = model(x).sum()\nloss.backward()\n"
           "optimizer.step()\n")
    result = migrate(src, "fabric", Options())
    removed = [d for d in result.diagnostics if d.code == "PTM113" and "removed `device`" in d.message]
    assert removed and removed[0].line == 5, [(d.code, d.line, d.message) for d in result.diagnostics]
