"""Issue 13 on GPUs: inputs left on the CPU while the framework moves the model (PTM114, PTM115).

A CPU run cannot show this crash. This prepares, here (needs pt-migrate), runs for a GPU machine:

    python -m benchmarks.gpu.issue13_devices prepare DIR     # DIR must be git-ignored (.git/info/exclude)
    run(kind="nvidia-h200-x2", carry=[DIR], command="bash benchmarks/gpu/issue13_devices.sh DIR")

Each case is a folder DIR/<case>/<variant>/ holding the files of one migrated script and `cmd` (how to start it):
`new-<target>` is the migration (default options), `old-<target>` the same with PTM114 and PTM115 left out (the
migration before issue 13's fix), each run with `python` (Fabric launches itself on every GPU) or `torchrun
--nproc_per_node 2` (Accelerate). `expect` says what the new migration must do: `ok` (exit 0). The runner prints a
table: case, variant, exit status, the device error if any, the last line.

Cases: the fixtures of both kinds, and three corpus entries from ~/.cache/pt-migrate-ecosystem (pygcn_train with
and without --no-cuda, minimalrl_ddpg, graykode_seq2seq_attention) with the harness's stand-in data and stubs.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

from migrator import Options, migrate

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
CORPUS = Path.home() / ".cache" / "pt-migrate-ecosystem"
FIXTURE_CASES = ["noise_in_helper", "module_sentinel_ddp", "input_helper_return", "input_params_kw",
                 "input_numpy_teacher", "input_forward_cpu", "input_other_module", "flag_module_level",
                 "flag_after_object", "flag_availability", "mnist_style"]
OLD = frozenset({"PTM114", "PTM115"})


def _start(target: str, script: str, args: str = "") -> str:
    if target == "fabric":
        return f"python3 {script} {args}".strip()
    return f"python3 -m torch.distributed.run --standalone --nproc_per_node 2 {script} {args}".strip()


def _write(folder: Path, files: dict, cmd: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    (folder / "cmd").write_text(cmd + "\n")


def _migrated(files: dict, entry: str, target: str, ignore=frozenset()) -> dict:
    out = {}
    for name, text in files.items():
        if name.endswith(".py"):
            result = migrate(text, target, Options(ignore=ignore, module_name=Path(name).stem))
            assert result.error is None, (name, result.error)
            out[name] = result.code
        else:
            out[name] = text
    return out


def fixtures(dest: Path) -> None:
    for case in FIXTURE_CASES:
        before = FIXTURES / case / "before"
        files = {p.name: p.read_text() for p in before.glob("*.py")}
        entry = "main.py" if case == "mnist_style" else "train.py"
        args = ["", "--no-cuda"] if case == "flag_module_level" else [""]
        for target in ("fabric", "accelerate"):
            for variant, ignore in (("new", frozenset()), ("old", OLD)):
                for a in args:
                    name = f"{variant}-{target}" + ("-nocuda" if a else "")
                    _write(dest / case / name, _migrated(files, entry, target, ignore), _start(target, entry, a))


def corpus(dest: Path) -> None:
    eco = ROOT / "benchmarks" / "ecosystem"
    entries = {  # name: (folder to run in, script, args, setup)
        "pygcn_train": ("pygcn", "train.py", ["", "--no-cuda"], "standins/pygcn.py"),
        "minimalrl_ddpg": (".", "ddpg.py", [""], None),
        "graykode_seq2seq_attention": ("4-2.Seq2Seq(Attention)", "Seq2Seq(Attention).py", [""], None),
    }
    for name, (workdir, script, argvs, setup) in entries.items():
        src = CORPUS / name / "src"
        files = {str(p.relative_to(src)): p.read_text() for p in src.rglob("*.py")}
        for target in ("fabric", "accelerate"):
            for variant, ignore in (("new", frozenset()), ("old", OLD)):
                for a in argvs:
                    folder = dest / name / (f"{variant}-{target}" + ("-nocuda" if a else ""))
                    script_path = f"{workdir}/{script}".lstrip("./")
                    migrated = {k: v for k, v in files.items()}
                    result = migrate(files[script_path], target, Options(ignore=ignore))
                    assert result.error is None, result.error
                    migrated[script_path] = result.code
                    cmd = f'cd "{workdir}" && ' + _start(target, f'"{script}"', a)
                    if name == "pygcn_train":
                        cmd = f'cd "{workdir}" && PYTHONPATH=..:$PYTHONPATH ' + _start(target, f'"{script}"', a + " --epochs 3")
                    if name == "minimalrl_ddpg":  # trains after 2000 environment steps, for 10000 episodes: a time limit
                        cmd = "timeout 100 " + _start(target, f'"{script}"', a) + \
                            "; rc=$?; test $rc -eq 124 && echo STOPPED_AFTER_100S && exit 0; exit $rc"
                    _write(folder, migrated, cmd)
                    if setup:
                        subprocess.run([sys.executable, str(eco / setup)], cwd=folder / workdir, check=True)
    shutil.copytree(eco / "stubs" / "gym", dest / "stubs" / "gym", dirs_exist_ok=True)
    wheels = dest / "whl"
    wheels.mkdir(exist_ok=True)
    for w in (eco / "wheels").glob("*.whl"):
        if w.name.split("-")[0].lower() in ("gymnasium", "cloudpickle", "farama_notifications"):
            shutil.copy(w, wheels)


def main(argv) -> int:
    if len(argv) != 2 or argv[0] != "prepare":
        print(__doc__)
        return 2
    dest = Path(argv[1])
    if dest.exists():
        shutil.rmtree(dest)
    fixtures(dest)
    corpus(dest)
    (dest / "cases.json").write_text(json.dumps(sorted(str(p.parent.relative_to(dest)) for p in dest.rglob("cmd"))))
    print(f"prepared {len(list(dest.rglob('cmd')))} runs in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
