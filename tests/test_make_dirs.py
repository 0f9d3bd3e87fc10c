"""PTM152 make-dirs: which folder creations become main-process-first, which get exist_ok=True, which are left."""
from migrator import Options, migrate

HEAD = "import os\nimport torch\nfrom pathlib import Path\n\n\ndef main():\n"
TAIL = ("    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "    loss = model(torch.randn(2, 4)).sum()\n    loss.backward()\n    optimizer.step()\n")


def run(body: str, target: str = "fabric"):
    result = migrate(HEAD + body + TAIL, target, Options())
    assert result.error is None, result.error
    again = migrate(result.code, target, Options())
    assert again.code == result.code, "a second run must change nothing"
    return result.code, [d for d in result.diagnostics if d.code == "PTM152"]


def test_unconditional_makedirs_goes_main_process_first():
    code, diags = run("    os.makedirs('logs/sample')\n")
    assert "with fabric.rank_zero_first(local=False):\n        os.makedirs('logs/sample', exist_ok=not fabric.is_global_zero)" in code
    assert diags and diags[0].fixed
    code, _ = run("    os.makedirs('logs/sample')\n", "accelerate")
    assert "os.makedirs('logs/sample', exist_ok=not accelerator.is_main_process)" in code


def test_exists_guard_gets_exist_ok_true():
    code, _ = run("    if not os.path.isdir('d'):\n        os.makedirs(os.path.join('d', 'x'))\n")
    assert "os.makedirs(os.path.join('d', 'x'), exist_ok=True)" in code and "rank_zero_first" not in code
    code, _ = run("    if not Path('d').exists():\n        Path('d').mkdir(parents=True)\n")
    assert "Path('d').mkdir(parents=True, exist_ok=True)" in code


def test_left_alone():
    # the file written under the test makes it PTM150's: the whole `if` is main-process-first already
    code, _ = run("    if not os.path.exists('d'):\n        os.makedirs('d')\n        open('d/x', 'w').write('1')\n")
    assert "rank_zero_first" in code and "exist_ok" not in code
    for body in ("    os.makedirs('d', exist_ok=True)\n",
                 "    if int(os.environ.get('RANK', 0)) == 0:\n        os.makedirs('d')\n",
                 "    try:\n        os.mkdir('d')\n    except FileExistsError:\n        pass\n",
                 "    utils.mkdir('d')\n"):
        code, diags = run(body)
        assert "exist_ok=not" not in code and not diags, body


def test_guard_that_writes_more_or_other_condition_gets_a_todo():
    for body in ("    if not os.path.exists('d'):\n        os.makedirs('d')\n        os.rename('a', 'd/a')\n",
                 "    if torch.rand(1).item() > 0.5:\n        os.makedirs('d')\n",
                 "    os.makedirs('d', exist_ok=os.environ.get('X') == '1')\n"):
        code, diags = run(body)
        assert "# TODO(pt-migrate) PTM152:" in code and diags and not diags[0].fixed, body


def test_out_of_reach_gets_a_todo():
    source = ("import os\nimport torch\n\nos.makedirs('at_import')\n\n\ndef main():\n" + TAIL +
              "\n\nif __name__ == '__main__':\n    main()\n")
    result = migrate(source, "fabric", Options())
    assert "# TODO(pt-migrate) PTM152:" in result.code and "exist_ok=not fabric" not in result.code
