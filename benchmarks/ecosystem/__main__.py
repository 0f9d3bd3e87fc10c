"""python -m benchmarks.ecosystem {fetch,static,cpu,report,all} -- see benchmarks/ecosystem/README.md."""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

from benchmarks.ecosystem import harness as H


def _results(args) -> Path:
    return Path(args.results) if args.results else H.RESULTS


def cmd_fetch(args) -> int:
    entries = H.select(H.load_manifest(args.manifest), args.only)
    res = H.fetch(entries, Path(args.mirror_root) if args.mirror_root else None)
    return 0 if all(r["ok"] for r in res.values()) else 1


def _merge(path: Path, key: str, new: dict, meta: dict) -> dict:
    """Keep the results of entries not run this time (--only)."""
    old = {}
    if path.exists():
        import json

        old = json.loads(path.read_text())
    rows = {f"{r['entry']}:{r.get('target', '')}": r for r in old.get(key, [])}
    for r in new[key]:
        rows[f"{r['entry']}:{r.get('target', '')}"] = r
    order = {e["name"]: i for i, e in enumerate(H.load_manifest())}
    out = dict(meta)
    out[key] = sorted(rows.values(), key=lambda r: (order.get(r["entry"], 999), r.get("target", "")))
    return out


def _meta(args) -> dict:
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "tool_commit": H.tool_commit(), "versions": H.versions(), "command": " ".join(["python -m benchmarks.ecosystem"] + sys.argv[1:])}


def cmd_static(args) -> int:
    entries = H.select(H.load_manifest(args.manifest), args.only)
    targets = args.targets.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ptm-eco-static-") as tmp:
        for e in entries:
            for t in targets:
                r = H.static_check(e, t, Path(tmp))
                rows.append(r)
                print(f"static {e['name']} {t}: {r['status']} {'ok' if r['ok'] else r['ok'] is None and 'n/a' or 'FAIL'}"
                      f" todo={r.get('todo')}" + "".join(f"\n    {f}" for f in r.get("failures", [])[:8]), flush=True)
    out = _merge(_results(args) / "static.json", "rows", {"rows": rows}, _meta(args))
    H.write_json(_results(args) / "static.json", out)
    return 0 if all(r["ok"] is not False for r in rows) else 1


def cmd_cpu(args) -> int:
    entries = H.select(H.load_manifest(args.manifest), args.only)
    targets = args.targets.split(",")
    rows = []
    work = Path(args.work) if args.work else H.cache_root() / "_runs" / args.accelerator
    for e in entries:
        print(f"runtime {e['name']}", flush=True)
        r = H.runtime_check(e, targets, work, steps=args.steps, devices=args.devices, accelerator=args.accelerator,
                              default_run=args.default_run, checks=args.checks)
        if not r["runnable"]:
            print(f"  not runnable: {r['reason']}", flush=True)
        rows.append(r)
        # written after every entry: a long run that is stopped keeps what it did
        name = "cpu.json" if args.accelerator == "cpu" else "gpu.json"
        out = _merge(_results(args) / name, "rows", {"rows": [r]}, _meta(args))
        out["accelerator"], out["devices"] = args.accelerator, args.devices
        # harness.run_entry: on GPUs the migration keeps the default device choice (no --accelerator)
        out["migrate_accelerator"] = args.accelerator if args.accelerator == "cpu" else None
        H.write_json(_results(args) / name, out)
    return 0


def cmd_merge(args) -> int:
    """Merge per-entry result files (gpu.sh runs entries in parallel) into one."""
    import json

    out = None
    for part in args.parts:
        data = json.loads(Path(part).read_text())
        if out is None:
            out = data
            continue
        out = _merge_data(out, data)
    if out is None:
        return 1
    H.write_json(Path(args.into), out)
    print(f"merged {len(args.parts)} file(s) into {args.into}")
    return 0


def _merge_data(old: dict, new: dict) -> dict:
    rows = {f"{r['entry']}:{r.get('target', '')}": r for r in old.get("rows", [])}
    for r in new.get("rows", []):
        rows[f"{r['entry']}:{r.get('target', '')}"] = r
    order = {e["name"]: i for i, e in enumerate(H.load_manifest())}
    out = dict(old)
    out["rows"] = sorted(rows.values(), key=lambda r: (order.get(r["entry"], 999), r.get("target", "")))
    return out


def cmd_prepare_gpu(args) -> int:
    """Fill benchmarks/ecosystem/wheels/ (git-ignored) with what gpu.sh needs on a machine without network: wheels
    for pt-migrate's dependencies and the corpus' (see gpu-requirements.txt), and the extracted corpus (cache/)."""
    import shutil
    import subprocess

    dest = H.HERE / "wheels"
    dest.mkdir(exist_ok=True)
    for py in args.python_versions.split(","):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps",
                        "--python-version", py, "--platform", "manylinux2014_x86_64", "--platform",
                        "manylinux_2_28_x86_64", "-d", str(dest), "libcst", "pyyaml"], check=False)
    reqs = [ln.split("#")[0].strip() for ln in (H.HERE / "gpu-requirements.txt").read_text().splitlines()]
    reqs = [r for r in reqs if r]
    # one by one (a name with no wheel for that Python only loses itself), for the GPU image's Python (3.12, see
    # /work/.library/device/KINDS.md)
    for py in [args.gpu_python]:
        for r in reqs:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "--python-version", py, "--platform", "manylinux2014_x86_64", "--platform",
                            "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "-d", str(dest), r],
                           check=False)
    cache = dest / "cache"
    for e in H.load_manifest():
        src = H.src_dir(e)
        if src.exists() and H.load_recipe(e["name"]).get("runnable", True):
            target = cache / e["name"] / "src"
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {total / 2 ** 20:.1f} MiB (the device tool carries at most 64 MiB with the working tree)")
    return 0


def cmd_report(args) -> int:
    from benchmarks.ecosystem import report

    text = report.render(_results(args))
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ecosystem")
    p.add_argument("--manifest", type=Path, default=None)
    p.add_argument("--results", default=None, help="results folder (default benchmarks/ecosystem/results)")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="extract each entry's files into the cache")
    f.add_argument("--mirror-root", default=None, help="folder of bare mirrors <owner>+<name>/repo; else git clone")
    f.add_argument("--only", default=None)
    s = sub.add_parser("static", help="migrate every entry with default options and check the output")
    s.add_argument("--only", default=None)
    s.add_argument("--targets", default="fabric,accelerate")
    c = sub.add_parser("cpu", help="run originals and migrations (1 process, N processes through verify)")
    c.add_argument("--only", default=None)
    c.add_argument("--targets", default="fabric,accelerate")
    c.add_argument("--steps", type=int, default=3)
    c.add_argument("--devices", type=int, default=2)
    c.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda"])
    c.add_argument("--work", default=None)
    c.add_argument("--checks", default=None, help="verify's checks (default: its own); `a` on a machine of one GPU")
    c.add_argument("--default-run", action="store_true",
                   help="also run the default migration (no --devices) on one process and compare its losses")
    m = sub.add_parser("merge", help="merge result files into one")
    m.add_argument("into")
    m.add_argument("parts", nargs="+")
    g = sub.add_parser("prepare-gpu", help="wheels and the corpus for gpu.sh, into benchmarks/ecosystem/wheels/")
    g.add_argument("--python-versions", default="3.10,3.11,3.12,3.13", help="for libcst and pyyaml")
    g.add_argument("--gpu-python", default="3.12", help="the GPU image's Python, for the corpus' wheels")
    r = sub.add_parser("report", help="write docs/ecosystem.md from the results")
    r.add_argument("--out", default=str(H.ROOT / "docs" / "ecosystem.md"))
    args = p.parse_args(argv)
    return {"fetch": cmd_fetch, "static": cmd_static, "cpu": cmd_cpu, "report": cmd_report,
            "merge": cmd_merge, "prepare-gpu": cmd_prepare_gpu}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
