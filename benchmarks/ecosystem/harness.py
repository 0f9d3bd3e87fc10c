"""The ecosystem check: fetch public training scripts, migrate them, check the output, run them.

Nothing here imports the corpus code; it is only copied, migrated by the `pt-migrate` command line and run as
subprocesses. See benchmarks/ecosystem/README.md.
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tokenize
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MANIFEST = HERE / "manifest.json"
RECIPES = HERE / "recipes"
STUBS = HERE / "stubs"
RESULTS = HERE / "results"
TARGETS = ("fabric", "accelerate")
TODO = "# TODO(pt-migrate)"


def cache_root() -> Path:
    return Path(os.environ.get("PTM_ECO_CACHE", Path.home() / ".cache" / "pt-migrate-ecosystem"))


def load_manifest(path: Optional[Path] = None) -> List[Dict[str, Any]]:
    with open(path or MANIFEST) as f:
        return json.load(f)["entries"]


def select(entries: List[Dict[str, Any]], only: Optional[str]) -> List[Dict[str, Any]]:
    if not only:
        return entries
    names = set(only.replace(",", " ").split())
    return [e for e in entries if e["name"] in names]


def load_recipe(name: str, recipes: Optional[Path] = None) -> Dict[str, Any]:
    path = (recipes or RECIPES) / f"{name}.json"
    if not path.exists():
        return {"runnable": False, "reason": "no recipe yet"}
    with open(path) as f:
        return json.load(f)


def _run(cmd: List[str], cwd: Optional[Path] = None, env: Optional[Dict[str, str]] = None,
         timeout: float = 600) -> Tuple[int, str, str, float, bool]:
    """Run a command in its own process group; (rc, stdout, stderr, seconds, timed_out)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
    finally:
        try:
            os.killpg(proc.pid, 9)  # ranks or workers left behind
        except OSError:
            pass
    return (proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
            time.perf_counter() - start, timed_out)


def _tail(text: str, n: int = 8) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def _last_error(text: str) -> str:
    """The last line that looks like an exception, else the last line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b", ln) or re.match(r"^[\w.]+: ", ln) and "Error" in ln:
            return ln[:400]
    return (lines[-1] if lines else "")[:400]


# ---- 1. fetch / extract ------------------------------------------------------------------------------------------

def _mirror_dir(mirror_root: Path, repo: str) -> Optional[Path]:
    base = mirror_root / repo.replace("/", "+")
    for cand in (base / "repo" / ".git", base / "repo", base):
        if (cand / "HEAD").exists() and (cand / "objects").exists():
            return cand
    return None


def _git_show(git_dir: Path, commit: str, path: str) -> Optional[bytes]:
    p = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], capture_output=True)
    return p.stdout if p.returncode == 0 else None


def _clone(repo: str, commit: str, into: Path) -> Optional[Path]:
    """Without a mirror: clone the repository (no checkout) and fetch the commit; returns the git dir."""
    git_dir = into / f"{repo.replace('/', '+')}.git"
    if not (git_dir / "HEAD").exists():
        into.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(["git", "clone", "--bare", "--filter=blob:none", f"https://github.com/{repo}.git",
                            str(git_dir)], capture_output=True)
        if p.returncode != 0:
            return None
    if subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "-e", commit], capture_output=True).returncode:
        subprocess.run(["git", "--git-dir", str(git_dir), "fetch", "origin", commit], capture_output=True)
    return git_dir


def entry_files(entry: Dict[str, Any], recipe: Optional[Dict[str, Any]] = None) -> List[str]:
    files = [entry["path"]] + list(entry.get("helpers", []))
    files += list((recipe or {}).get("extra_files", []))
    return list(dict.fromkeys(files))


def fetch(entries: List[Dict[str, Any]], mirror_root: Optional[Path] = None, cache: Optional[Path] = None,
          recipes: Optional[Path] = None, log=print) -> Dict[str, Dict[str, Any]]:
    """Write each entry's files into <cache>/<name>/src/<path in the repository>. Sources, in order: a bare mirror
    under mirror_root, files placed by hand under <cache>/_readfile/<owner+name>/<commit>/<path>, a git clone."""
    cache = cache or cache_root()
    out: Dict[str, Dict[str, Any]] = {}
    for e in entries:
        recipe = load_recipe(e["name"], recipes)
        src = cache / e["name"] / "src"
        git_dir = _mirror_dir(mirror_root, e["repo"]) if mirror_root else None
        by_hand = cache / "_readfile" / e["repo"].replace("/", "+") / e["commit"]
        missing, source = [], None
        for rel in entry_files(e, recipe):
            data = None
            if git_dir is not None:
                data, source = _git_show(git_dir, e["commit"], rel), "mirror"
            if data is None and (by_hand / rel).exists():
                data, source = (by_hand / rel).read_bytes(), "by hand (read_file)"
            if data is None and git_dir is None and os.environ.get("PTM_ECO_NO_CLONE") != "1":
                cloned = _clone(e["repo"], e["commit"], cache / "_clones")
                if cloned is not None:
                    git_dir = cloned
                    data, source = _git_show(cloned, e["commit"], rel), "clone"
            if data is None:
                missing.append(rel)
                continue
            dest = src / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists() or dest.read_bytes() != data:
                dest.write_bytes(data)
        ok = not missing
        out[e["name"]] = {"ok": ok, "source": source, "missing": missing}
        log(f"fetch {e['name']}: {'ok' if ok else 'MISSING ' + ', '.join(missing)} ({source})")
    return out


def src_dir(entry: Dict[str, Any], cache: Optional[Path] = None) -> Path:
    return (cache or cache_root()) / entry["name"] / "src"


def have_source(entry: Dict[str, Any], cache: Optional[Path] = None) -> bool:
    return (src_dir(entry, cache) / entry["path"]).exists()


# ---- migration through the command line ------------------------------------------------------------------------

def ptm_cmd() -> List[str]:
    exe = Path(sys.executable).parent / "pt-migrate"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "migrator"]


def migrate(folder: Path, target: str, extra: Optional[List[str]] = None, timeout: float = 600) -> Dict[str, Any]:
    """`pt-migrate FOLDER --target T --format json` in place, as a user runs it."""
    cmd = ptm_cmd() + [str(folder), "--target", target, "--format", "json", "--no-color"] + list(extra or [])
    env = dict(os.environ, NO_COLOR="1")
    rc, out, err, secs, timed_out = _run(cmd, cwd=folder.parent, env=env, timeout=timeout)
    try:
        report = json.loads(out)
    except ValueError:
        report = None
    return {"rc": rc, "report": report, "stderr": err, "seconds": round(secs, 2), "timed_out": timed_out,
            "cmd": " ".join(["pt-migrate", folder.name, "--target", target] + list(extra or []))}


def _snapshot(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.py")) if p.is_file()}


# ---- 2. static check --------------------------------------------------------------------------------------------

def _code_only(text: str) -> List[Tuple[int, str]]:
    """(line number, code with strings and comments blanked) for every line."""
    lines = text.splitlines()
    blank = [list(ln) for ln in lines]
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.COMMENT, tokenize.STRING):
                (sr, sc), (er, ec) = tok.start, tok.end
                for r in range(sr, er + 1):
                    row = blank[r - 1]
                    a = sc if r == sr else 0
                    b = ec if r == er else len(row)
                    for i in range(a, min(b, len(row))):
                        row[i] = " "
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return [(i + 1, "".join(row)) for i, row in enumerate(blank)]


_LEFTOVERS = {
    "DDP": re.compile(r"\b(DistributedDataParallel|DDP)\s*\("),
    "GradScaler": re.compile(r"\bGradScaler\s*\("),
    "backward": re.compile(r"(?<![\w.])((?:[\w\]\)]+\.)*[\w\]\)]+)\.backward\s*\("),
}


def leftovers(text: str) -> List[str]:
    """Plain DDP / GradScaler / `.backward()` on code lines that no TODO(pt-migrate) comment marks (the comment sits
    above the statement, possibly a few lines up for a multi-line statement, or at the end of the line)."""
    raw = text.splitlines()
    found = []
    for no, code in _code_only(text):
        for kind, rx in _LEFTOVERS.items():
            for m in rx.finditer(code):
                if kind == "backward":
                    recv = m.group(1)
                    if re.search(r"(fabric|accelerator)$", recv, re.I) or recv in ("torch.autograd", "autograd"):
                        continue
                window = raw[max(0, no - 6):no]
                if any(TODO in ln for ln in window):
                    continue
                found.append(f"line {no}: {kind}")  # the line's text stays out of the committed results
    return found


def _strip_todo(text: str) -> List[str]:
    return [ln for ln in text.splitlines() if TODO not in ln and not ln.lstrip().startswith("#   ")]


def static_check(entry: Dict[str, Any], target: str, work: Path, cache: Optional[Path] = None) -> Dict[str, Any]:
    src = src_dir(entry, cache)
    res: Dict[str, Any] = {"entry": entry["name"], "target": target}
    if not have_source(entry, cache):
        res.update(status="no source", ok=None, failures=["source not available here"])
        return res
    scratch = work / entry["name"] / target / "src"
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(src, scratch)
    before = _snapshot(scratch)
    first = migrate(scratch, target)
    after = _snapshot(scratch)
    failures: List[str] = []
    crashes: List[str] = []
    selfcheck: List[str] = []
    errors: List[str] = []
    report = first["report"]
    if report is None:
        failures.append(f"no JSON report (exit {first['rc']}): {_tail(first['stderr'], 3)}")
        crashes.append(_tail(first["stderr"], 3))
    diags = []
    for f in (report or {}).get("files", []):
        rel = str(Path(f["path"]).resolve().relative_to(scratch.resolve())) if Path(f["path"]).is_absolute() \
            else f["path"].split("src/", 1)[-1]
        for d in f.get("diagnostics", []):
            diags.append(dict(d, file=rel))
            if d["code"] == "PTM002":
                crashes.append(f"{rel}:{d['line']}: {d['message']}")
            elif d["code"] == "PTM006":
                selfcheck.append(f"{rel}:{d['line']}: {d['message']}")
            elif d.get("severity") == "error":
                errors.append(f"{rel}:{d['line']}: {d['code']} {d['message']}")
    # every output file parses
    for rel, data in after.items():
        try:
            ast.parse(data.decode("utf-8", "replace"))
        except SyntaxError as exc:
            failures.append(f"{rel}: output does not parse: {exc.msg} (line {exc.lineno})")
    # a second run changes nothing
    migrate(scratch, target)
    again = _snapshot(scratch)
    changed_again = sorted(k for k in again if again[k] != after.get(k))
    if changed_again:
        failures.append("second run changed " + ", ".join(changed_again))
    # leftovers and the framework object
    left = {}
    # a file that an error left unchanged is reported by that error, not again line by line
    error_files = {d["file"] for d in diags if d.get("severity") == "error"}
    # a file declined as a whole (PTM007 Hogwild, PTM008 another library's engine, PTM009 DDP code no object
    # would reach) keeps all its code on purpose; its one TODO says why
    declined = {d["file"] for d in diags if d.get("code") in ("PTM007", "PTM008", "PTM009")}
    # PTM120 keeps a GradScaler made on the script's own switch in a script that casts by hand, with a note
    kept_scaler = {d["file"] for d in diags if d.get("code") == "PTM120"}
    for rel, data in after.items():
        if rel in error_files and data == before.get(rel):
            continue
        if any(str(f).endswith(rel) for f in declined) and \
                _strip_todo(data.decode("utf-8", "replace")) == _strip_todo(before.get(rel, b"").decode("utf-8", "replace")):
            continue
        found = leftovers(data.decode("utf-8", "replace"))
        if any(str(f).endswith(rel) for f in kept_scaler):
            found = [f for f in found if "GradScaler" not in f]
        if found:
            left[rel] = found
    changed = sorted(k for k in after if after[k] != before.get(k))
    code_changed = [k for k in changed
                    if _strip_todo(after[k].decode("utf-8", "replace")) != _strip_todo(before[k].decode("utf-8", "replace"))]
    todo = sum(data.decode("utf-8", "replace").count(TODO) - before.get(rel, b"").decode("utf-8", "replace").count(TODO)
               for rel, data in after.items())
    if crashes:
        status = "crashed"
    elif code_changed:
        status = "migrated"
    elif changed:
        status = "unchanged, TODO"
    else:
        status = "unchanged"
    if code_changed:
        texts = "\n".join(after[k].decode("utf-8", "replace") for k in after)
        obj = "Fabric(" if target == "fabric" else "Accelerator("
        setups = (".setup(", ".setup_dataloaders(", ".setup_module(") if target == "fabric" else (".prepare(",)
        if obj not in texts:
            failures.append(f"migrated, but no {obj} in the output")
        if not any(s in texts for s in setups):
            failures.append(f"migrated, but no {'/'.join(setups)} in the output")
    for rel, found in left.items():
        for item in found:
            failures.append(f"{rel}: unmarked leftover {item}")
    prefix = str(scratch) + os.sep
    crashes, selfcheck, errors = ([m.replace(prefix, "") for m in xs] for xs in (crashes, selfcheck, errors))
    failures += [f"self-check: {m}" for m in selfcheck]
    failures += [f"crash: {m}" for m in crashes if m]
    failures += [f"error: {m}" for m in errors]
    codes: Dict[str, int] = {}
    for d in diags:
        codes[d["code"]] = codes.get(d["code"], 0) + 1
    res.update(
        status=status, ok=not failures, failures=failures, crashes=crashes, selfcheck=selfcheck, errors=errors,
        todo=todo, changed_files=changed, code_changed_files=code_changed, idempotent=not changed_again,
        leftovers=left, diagnostic_codes=codes, needs_attention=sum(1 for d in diags if d.get("needs_attention")),
        exit_code=first["rc"], seconds=first["seconds"], command=first["cmd"],
        summary=(report or {}).get("summary"),
    )
    return res


def _file_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for rel, data in _snapshot(folder).items():
        h.update(rel.encode() + b"\0" + data)
    return h.hexdigest()[:12]


# ---- 3/4. stand-ins and the runtime check ----------------------------------------------------------------------

SHIM = '''\
# Written by the pt-migrate ecosystem harness: runs {script} from {workdir}, as the recipe says, so that
# `pt-migrate verify` (which stages only the named file's folder) can run a script whose working folder or
# imports lie outside its own folder. It hands the script the arguments unchanged. (Plain, lightning or
# accelerate scripts alike: the verify runner patches what the sources name.)
import os, runpy, sys
WORKDIR = {workdir!r}
SCRIPT = {script!r}
EXTRA = {extra!r}
os.chdir(WORKDIR)
sys.path[:1] = [os.path.dirname(SCRIPT)] + EXTRA
sys.argv = [SCRIPT] + sys.argv[1:]
runpy.run_path(SCRIPT, run_name="__main__")
'''


def _env(recipe: Dict[str, Any], tree: Path, accelerator: str = "cpu") -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PTM_VERIFY_", "LT_", "MASTER_", "LOCAL_", "RANK", "WORLD_", "ACCELERATE_"))}
    paths = []
    if recipe.get("seed", True):
        paths.append(str(HERE / "seed"))
        env["PTM_ECO_SEED"] = "0"
        env["PYTHONHASHSEED"] = "0"  # set iteration order of strings (a vocabulary built from a set)
    if recipe.get("stubs"):
        paths.append(str(STUBS))
    paths += [str(tree / p) for p in recipe.get("pythonpath", [])]
    paths.append(str(ROOT))  # the verify runner
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env["MPLBACKEND"] = "Agg"
    env["PTM_ECO"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    if accelerator == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    for k, v in recipe.get("env", {}).items():
        env[k] = str(v)
    return env


def prepare_tree(entry: Dict[str, Any], recipe: Dict[str, Any], tree: Path, cache: Optional[Path] = None,
                 log=print) -> Optional[str]:
    """Copy the source into `tree` and create the stand-in data there; returns an error or None."""
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(src_dir(entry, cache), tree)
    setup = recipe.get("setup")
    if setup:
        workdir = tree / recipe.get("workdir", ".")
        workdir.mkdir(parents=True, exist_ok=True)
        rc, out, err, _, _ = _run([sys.executable, str(HERE / setup)] + list(recipe.get("setup_args", [])),
                                  cwd=workdir, env=_env(recipe, tree), timeout=300)
        if rc != 0:
            return f"stand-in setup failed: {_tail(err, 4)}"
    return None


def _observed_run(recipe: Dict[str, Any], tree: Path, script: Path, steps: int, out_dir: Path,
                  accelerator: str = "cpu", single: bool = False) -> Dict[str, Any]:
    """Run the script like the recipe says, under the verify runner (it observes losses and stops after `steps`
    optimizer steps; it edits nothing). Returns rc, status, losses, the error line."""
    workdir = tree / recipe.get("workdir", ".")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    runner = [sys.executable, "-m", "migrator.verify.runner", "--steps", str(steps), "--out", str(out_dir)]
    if single:
        runner.append("--single-device")
    shim = _shim(recipe, tree, script)
    cmd = runner + ["--", str(shim or script)] + list(recipe.get("argv", []))
    rc, out, err, secs, timed_out = _run(cmd, cwd=workdir, env=_env(recipe, tree, accelerator),
                                         timeout=recipe.get("timeout_s", 300))
    results = []
    for p in sorted(out_dir.glob("rank*.json")):
        try:
            results.append(json.loads(p.read_text()))
        except ValueError:
            pass
    r0 = results[0] if results else {}
    ok = rc == 0 and not timed_out
    return {"rc": rc, "ok": ok, "timed_out": timed_out, "seconds": round(secs, 1),
            "status": r0.get("status"), "steps": r0.get("steps"), "losses": r0.get("losses", []),
            "error": None if ok else (r0.get("error") or _last_error(err) or f"exit {rc}"),
            "stderr_tail": None if ok else _tail(err, 12), "stdout_tail": _tail(out, 4)}


def _needs_shim(recipe: Dict[str, Any], script_rel: str) -> bool:
    return recipe.get("shim", Path(recipe.get("workdir", ".")) != Path(script_rel).parent
                      or bool(recipe.get("pythonpath")))


def _shim(recipe: Dict[str, Any], tree: Path, script: Path) -> Optional[Path]:
    rel = str(script.relative_to(tree))
    if not _needs_shim(recipe, rel):
        return None
    folder = tree.parent / f"{tree.name}-shim"
    folder.mkdir(exist_ok=True)
    shim = folder / "eco_entry.py"
    text = SHIM.format(workdir=str(tree / recipe.get("workdir", ".")), script=str(script),
                       extra=[str(tree / p) for p in recipe.get("pythonpath", [])])
    # verify picks the Fabric launch (python / torchrun / fabric run) from the named file's text: repeat the real
    # script's Fabric(...) call and its launch() in a comment, so it picks what it would pick for the script
    try:
        source = script.read_text(encoding="utf-8", errors="replace")
    except OSError:
        source = ""
    if "DataLoader" in source:  # verify's sharding check reads this too (a script without one is fed by hand)
        text += "# the real script builds a DataLoader\n"
    call = re.search(r"Fabric\((?:[^()]|\([^()]*\))*?\)", source)
    if call:
        hint = " ".join(call.group(0).split())
        text += f"# launch of the real script, for verify: {hint}" + (" ... .launch()" if ".launch(" in source else "")
        text += "\n"
    shim.write_text(text)
    return shim


def _parity(a: List[Any], b: List[Any], rtol: float = 1e-4, atol: float = 1e-5) -> Dict[str, Any]:
    if not a or not b:
        return {"status": "n/a", "detail": f"losses observed: original {len(a)}, migrated {len(b)}"}
    n = min(len(a), len(b))
    worst = 0.0
    for i in range(n):
        x, y = a[i], b[i]
        if x is None or y is None:
            continue
        if abs(x - y) > atol + rtol * abs(x):
            return {"status": "fail", "detail": f"step {i + 1}: original {x!r}, migrated {y!r}"}
        worst = max(worst, abs(x - y))
    return {"status": "pass", "detail": f"{n} step losses, max diff {worst:.2g}"}


def runtime_check(entry: Dict[str, Any], targets: List[str], work: Path, steps: int = 3, devices: int = 2,
                  accelerator: str = "cpu", cache: Optional[Path] = None, log=print,
                  recipes: Optional[Path] = None, default_run: bool = False,
                  checks: Optional[str] = None) -> Dict[str, Any]:
    recipe = load_recipe(entry["name"], recipes)
    res: Dict[str, Any] = {"entry": entry["name"], "runnable": bool(recipe.get("runnable", True)),
                           "reason": recipe.get("reason"), "targets": {}}
    if res["runnable"] and accelerator == "cpu" and recipe.get("cpu", True) is False:
        res["runnable"] = False  # a GPU-only entry: gpu.sh runs it
    if not res["runnable"]:
        return res
    if not have_source(entry, cache):
        res.update(runnable=False, reason="source not available here")
        return res
    steps = int(recipe.get("steps", steps))
    script_rel = recipe.get("script", entry["path"])
    base = work / entry["name"]
    orig_tree = base / "original"
    err = prepare_tree(entry, recipe, orig_tree, cache)
    if err:
        res["original"] = {"ok": False, "error": err}
        return res
    orig = _observed_run(recipe, orig_tree, orig_tree / script_rel, steps, base / "obs-original", accelerator)
    res["original"] = orig
    log(f"  original: {'runs' if orig['ok'] else 'FAILS: ' + str(orig['error'])} ({orig['seconds']} s)")
    for target in targets:
        t: Dict[str, Any] = {}
        res["targets"][target] = t
        if default_run:
            # the default migration (what `pt-migrate DIR --target T` writes) on one process
            tree1 = base / f"{target}-1"
            prepare_tree(entry, recipe, tree1, cache)
            migrate(tree1, target)
            one = _observed_run(recipe, tree1, tree1 / script_rel, steps, base / f"obs-{target}-1", accelerator)
            t["default_one"] = one
            t["default_parity"] = _parity(orig.get("losses", []), one.get("losses", [])) \
                if orig["ok"] and one["ok"] else {"status": "n/a", "detail": "a run failed"}
            log(f"  {target} default migration, 1 process: {'runs' if one['ok'] else 'FAILS: ' + str(one['error'])}"
                f"; parity {t['default_parity']['status']}")
        # the N-process migration, through pt-migrate verify
        treeN = base / f"{target}-{devices}"
        prepare_tree(entry, recipe, treeN, cache)
        # on GPUs with the default device choice, as a user runs it: an explicit --accelerator cuda overrode a
        # script's own --no-cuda (pygcn, TCN), so the original trained on the CPU and the migration on a GPU
        opts = ["--accelerator", accelerator] if accelerator == "cpu" else []
        if target == "fabric":
            opts += ["--devices", str(devices), "--strategy", "ddp"]
        beforeN = _snapshot(treeN)
        mN = migrate(treeN, target, opts)
        afterN = _snapshot(treeN)
        code_changed = [k for k in afterN if k in beforeN and _strip_todo(afterN[k].decode("utf-8", "replace"))
                        != _strip_todo(beforeN[k].decode("utf-8", "replace"))]
        errors = [f"{f['path']}:{d['line']}: {d['code']}" for f in (mN["report"] or {}).get("files", [])
                  for d in f.get("diagnostics", []) if d.get("severity") == "error"]
        t["migrate"] = {"rc": mN["rc"], "command": mN["cmd"], "summary": (mN["report"] or {}).get("summary"),
                        "code_changed": code_changed, "errors": errors}
        # the original's folder as prepared: verify links what lies in it, and an earlier run's outputs there made
        # a script that refuses an existing output folder fail (pytorch_ddpm_cifar10 on 2 GPUs, FileExistsError)
        prepare_tree(entry, recipe, orig_tree, cache)
        t["verify"] = run_verify_entry(recipe, orig_tree, treeN, script_rel, target, devices, steps, accelerator,
                                       checks)
        v = t["verify"]
        t["one"], t["parity"] = _one_from_verify(v)
        log(f"  {target} 1 process: {'runs' if t['one']['ok'] else 'FAILS: ' + str(t['one']['error'])}; "
            f"verify --devices {devices}: exit {v.get('exit_code')} "
            + " ".join(f"{k}:{c['status']}" for k, c in v.get("checks", {}).items()))
    return res


def _one_from_verify(v: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The migrated script on one process, as verify ran it (check a's run): ok, error; and check a as parity."""
    run = v.get("runs", {}).get("migrated-1")
    if not run:
        return {"ok": None, "error": v.get("error") or "verify did not run it"}, {"status": "n/a"}
    ranks = run.get("ranks") or [{}]
    ok = run.get("rc") == 0 and not run.get("timed_out") and bool(run.get("ranks"))
    err = None if ok else (ranks[0].get("error") or _last_error(run.get("stderr_tail") or "")
                           or ("timed out" if run.get("timed_out") else f"exit {run.get('rc')}"))
    a = v.get("checks", {}).get("a", {})
    return {"ok": ok, "error": err, "steps": ranks[0].get("steps")}, \
        {"status": a.get("status", "n/a"), "detail": a.get("detail", "")}


def run_verify_entry(recipe: Dict[str, Any], orig_tree: Path, mig_tree: Path, script_rel: str, target: str,
                     devices: int, steps: int, accelerator: str, checks: Optional[str] = None) -> Dict[str, Any]:
    orig_script = orig_tree / script_rel
    mig_script = mig_tree / script_rel
    orig_shim = _shim(recipe, orig_tree, orig_script)
    mig_shim = _shim(recipe, mig_tree, mig_script)
    timeout = recipe.get("timeout_s", 300)
    cmd = ptm_cmd() + ["verify", str(orig_shim or orig_script), "--target", target, "--migrated",
                       str(mig_shim or mig_script), "--devices", str(devices), "--steps", str(steps),
                       "--accelerator", accelerator, "--timeout", str(timeout), "--json"] + \
        (["--checks", checks] if checks else []) + ["--"] + \
        list(recipe.get("argv", []))
    rc, out, err, secs, timed_out = _run(cmd, cwd=orig_tree, env=_env(recipe, orig_tree, accelerator),
                                         timeout=4 * timeout + 120)
    try:
        rep = json.loads(out)
    except ValueError:
        return {"exit_code": rc, "error": _tail(err or out, 4), "checks": {}, "shim": bool(orig_shim)}
    checks = {c["id"]: c for c in rep.get("checks", [])}
    runs = rep.get("runs", {})
    return {"exit_code": rep.get("exit_code", rc),
            "checks": {k: {"status": v.get("status"), "detail": str(v.get("message", ""))[:600]}
                       for k, v in checks.items()},
            "runs": {k: {"rc": v.get("rc"), "timed_out": v.get("timed_out"), "wall_s": v.get("wall_s"),
                         "ranks": [{kk: r.get(kk) for kk in ("rank", "world_size", "status", "error", "steps")}
                                   for r in v.get("ranks", [])],
                         "stderr_tail": _tail(v.get("stderr_tail", ""), 12) if v.get("rc") else ""}
                     for k, v in runs.items()},
            "notes": rep.get("notes", []), "error": rep.get("error"), "seconds": round(secs, 1),
            "shim": bool(orig_shim)}


# ---- results --------------------------------------------------------------------------------------------------

def tool_commit() -> str:
    p = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "migrator", "rules"],
                           capture_output=True, text=True).stdout.strip()
    return p.stdout.strip() + ("+uncommitted engine changes" if dirty else "")


def _no_source_lines(text: str) -> str:
    """A traceback without the quoted source lines (they are the corpus' code, which stays out of the results)."""
    out = []
    for ln in text.splitlines():
        body = re.sub(r"^\[(?:rank|default)\d+\]:", "", ln)  # torchrun's rank prefix
        s = body.strip()
        if body.startswith("    ") and not s.startswith("File ") or (s and set(s) <= set("^~ ")):
            continue
        out.append(ln)
    return "\n".join(out)


def sanitize(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: (_no_source_lines(v) if isinstance(v, str) and k.endswith("_tail") else sanitize(v))
                for k, v in data.items()}
    if isinstance(data, list):
        return [sanitize(x) for x in data]
    return data


def write_json(path: Path, data: Any) -> None:
    data = sanitize(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def versions() -> Dict[str, str]:
    code = ("import json,sys\nfrom importlib import metadata\nout={'python':sys.version.split()[0]}\n"
            "for m in ('torch','lightning','accelerate','libcst'):\n"
            "    try:\n        out[m]=metadata.version(m)\n    except Exception:\n        out[m]=None\n"
            "print(json.dumps(out))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {}
