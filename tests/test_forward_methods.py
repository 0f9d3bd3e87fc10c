"""Fabric's mark_forward_method accepts only bound methods (it raises AttributeError on a submodule, an attribute
or a staticmethod): PTM105 marks what the module's classes define as methods, and where the model's class is
imported it cannot tell, so it says so instead of marking."""
from migrator import Options, migrate

LOCAL = '''import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(4, 2)

    def forward(self, x):
        return self.encoder(x)

    def loss(self, x):
        return self(x).pow(2).mean()

    @staticmethod
    def name():
        return "net"


def main():
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        x = torch.randn(8, 4)
        loss = model.loss(x)
        loss.backward()
        optimizer.step()
        print(model.encoder(x).shape, model.name())


if __name__ == "__main__":
    main()
'''


def test_marks_methods_only():
    code = migrate(LOCAL, "fabric", Options()).code
    assert 'model.mark_forward_method("loss")' in code
    assert "mark_forward_method(\"encoder\")" not in code and "mark_forward_method(\"name\")" not in code
    assert "TODO(pt-migrate)" not in code


def test_imported_class_is_not_guessed():
    source = LOCAL.replace("import torch.nn as nn\n", "import torch.nn as nn\nfrom models import Net\n")
    source = source[:source.index("class Net")] + source[source.index("def main"):]
    result = migrate(source, "fabric", Options())
    assert not [ln for ln in result.code.splitlines() if "mark_forward_method(" in ln and "#" not in ln]
    assert "# TODO(pt-migrate) PTM105: `model.loss(...)`, `model.encoder(...)`, `model.name(...)` called outside" \
        in result.code, result.code
    assert migrate(result.code, "fabric", Options()).code == result.code  # a second run changes nothing
