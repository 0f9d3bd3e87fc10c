"""Model and optimizer taken over by another training library (migrator/foreign_engine.py, PTM008): the script is
left unchanged but for one TODO, and a helper of the script's own that hands back the same objects does not
count."""
import textwrap

from migrator import migrate

OPACUS = textwrap.dedent("""\
    import torch
    from opacus import PrivacyEngine
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt, loader = PrivacyEngine().make_private(module=model, optimizer=opt, data_loader=loader,
                                                      noise_multiplier=1.0, max_grad_norm=1.0)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    """)

OWN_HELPER = textwrap.dedent("""\
    import torch

    def initialize(model, opt):
        return model, opt

    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt = initialize(model, opt)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    """)


def test_a_library_that_wraps_model_and_optimizer_declines_with_one_todo():
    for target in ("fabric", "accelerate"):
        result = migrate(OPACUS, target)
        added = [l for l in result.code.splitlines() if l not in OPACUS.splitlines()]
        assert len(added) == 1 and added[0].startswith("# TODO(pt-migrate) PTM008:"), result.code
        assert [d.code for d in result.diagnostics] == ["PTM008"]
        assert migrate(result.code, target).code == result.code  # idempotent


def test_the_scripts_own_helper_of_the_same_name_still_migrates():
    result = migrate(OWN_HELPER, "fabric")
    assert "PTM008" not in {d.code for d in result.diagnostics}
    assert "fabric.backward(" in result.code
