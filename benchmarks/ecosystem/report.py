"""docs/ecosystem.md from benchmarks/ecosystem/results/{static,cpu,gpu}.json (python -m benchmarks.ecosystem report).

The text depends only on the result files, so a second run over the same results gives the same file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from benchmarks.ecosystem import harness as H


def _load(path: Path) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else None


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _short(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _check(v: Dict[str, Any], k: str) -> str:
    c = v.get("checks", {}).get(k)
    if not c:
        return "—"
    return {"pass": "pass", "fail": "**fail**", "skip": "skip", "info": "info"}.get(c["status"], c["status"])


def _left_unchanged(tr: Dict[str, Any], static_row: Dict[str, Any]) -> bool:
    """The N-process migration left the code unchanged (TODO lines at most): recorded by the runtime check, else
    taken from the static check of the default migration."""
    mig = tr.get("migrate", {})
    if "code_changed" in mig:
        return not mig["code_changed"]
    return static_row.get("status", "").startswith("unchanged")


def _runtime_rows(data: Dict[str, Any], entries: List[Dict[str, Any]], static: Dict[Any, Dict[str, Any]],
                  label: str) -> List[str]:
    rows = {r["entry"]: r for r in data.get("rows", [])}
    n = data.get("devices", 2)
    out = [f"| entry | target | original, 1 process | migrated, 1 process | a parity | b {n} processes | c sync | "
           f"d sharding | e once | k written once |", "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        r = rows.get(e["name"])
        if r is None or not r.get("runnable", True):
            continue
        orig = r.get("original", {})
        o = "runs" if orig.get("ok") else f"fails: {_short(orig.get('error') or '', 70)}"
        for t, tr in sorted(r.get("targets", {}).items()):
            one = tr.get("one", {})
            if one.get("ok"):
                m = "runs"
            elif one.get("ok") is None:
                m = "not run"
            else:
                m = ("**fails**: " if orig.get("ok") else "fails: ") + _short(one.get("error") or "", 70)
            v = tr.get("verify", {})
            left = _left_unchanged(tr, static.get((e["name"], t), {}))
            a = _check(v, "a")
            if not orig.get("ok") and v.get("checks"):
                a = "n/a: original fails"
            elif H.load_recipe(e["name"]).get("no_parity") and v.get("checks"):
                a = "n/a: original not deterministic"
            if not v.get("checks"):
                cells = [f"not run: {_short(v.get('error') or '', 60)}"] + ["—"] * 5
            elif left:
                cells = [a, "n/a: left unchanged", "—", "—", "—", "—"]
            else:
                cells = [a] + [_check(v, k) for k in "bcdek"]
            out.append("| " + " | ".join(_cell(x) for x in [e["name"], t, o, m] + cells) + " |")
    return out


def _not_runnable(data: Dict[str, Any], entries: List[Dict[str, Any]]) -> List[str]:
    rows = {r["entry"]: r for r in data.get("rows", [])}
    cpu = data.get("accelerator", "cpu") == "cpu"
    out = []
    for e in entries:
        r = rows.get(e["name"])
        if r is None:
            recipe = H.load_recipe(e["name"])
            if recipe.get("runnable", True) is False or (cpu and recipe.get("cpu", True) is False):
                out.append(f"- `{e['name']}`: {recipe.get('reason')}")
            else:
                out.append(f"- `{e['name']}`: not run in this pass")
        elif not r.get("runnable", True):
            out.append(f"- `{e['name']}`: {r.get('reason')}")
    return out


def _migrate_options(data: Dict[str, Any]) -> str:
    """The options the N-process migration was made with (results from before 2026-12-01 name no
    migrate_accelerator: they passed --accelerator on every device)."""
    acc = data.get("migrate_accelerator", data.get("accelerator", "cpu"))
    n = data.get("devices", 2)
    if acc is None:
        return (f"Fabric: `--devices {n} --strategy ddp`; Accelerate: no option; the device left to the framework, "
                f"as by default")
    return f"Fabric: `--accelerator {acc} --devices {n} --strategy ddp`; Accelerate: `--accelerator {acc}`"


def _runtime_totals(data: Dict[str, Any], static: Dict[Any, Dict[str, Any]]) -> List[str]:
    out = []
    rows = [r for r in data.get("rows", []) if r.get("runnable", True)]
    orig_ok = sum(1 for r in rows if r.get("original", {}).get("ok"))
    out.append(f"- entries run: {len(rows)}; originals that run here: {orig_ok}")
    for t in H.TARGETS:
        trs = [(r, r["targets"][t]) for r in rows if t in r.get("targets", {})]
        if not trs:
            continue
        left = sum(1 for r, x in trs if _left_unchanged(x, static.get((r["entry"], t), {})))
        trs_m = [(r, x) for r, x in trs if not _left_unchanged(x, static.get((r["entry"], t), {}))]
        one = sum(1 for _, x in trs if x.get("one", {}).get("ok"))
        one_o = sum(1 for r, x in trs if x.get("one", {}).get("ok") and r.get("original", {}).get("ok"))
        par = sum(1 for r, x in trs if x.get("parity", {}).get("status") == "pass" and r.get("original", {}).get("ok"))
        par_n = sum(1 for r, x in trs if r.get("original", {}).get("ok") and x.get("one", {}).get("ok")
                    and not H.load_recipe(r["entry"]).get("no_parity"))
        def n(k):
            return sum(1 for _, x in trs_m if x.get("verify", {}).get("checks", {}).get(k, {}).get("status") == "pass")

        def clean(x):
            c = x.get("verify", {}).get("checks", {})
            return c.get("b", {}).get("status") == "pass" and all(c.get(k, {}).get("status") != "fail" for k in "cde")

        vpass = sum(1 for _, x in trs_m if clean(x))
        out.append(f"- {t}: the migration runs on 1 process for {one}/{len(trs)} entries ({one_o} of the {orig_ok} "
                   f"whose original runs); loss parity (a) {par} of {par_n} comparable; left unchanged (TODO or self-check) {left}; of the "
                   f"{len(trs_m)} migrated: {data.get('devices', 2)} processes run (b) {n('b')}, sync (c) {n('c')}, "
                   f"sharding (d) {n('d')}, output once (e) {n('e')}, no failure in b-e {vpass}; every file written "
                   f"by one rank (k) {n('k')} of {sum(1 for _, x in trs_m if 'k' in x.get('verify', {}).get('checks', {}))} "
                   f"checked")
    return out


def _runtime_failures(data: Dict[str, Any], static: Dict[Any, Dict[str, Any]]) -> List[str]:
    out = []
    for r in data.get("rows", []):
        if not r.get("runnable", True):
            continue
        orig = r.get("original", {})
        for t, tr in sorted(r.get("targets", {}).items()):
            one = tr.get("one", {})
            if not one.get("ok"):
                prefix = "fault" if orig.get("ok") else "fails (the original fails too)"
                out.append(f"- `{r['entry']}` {t}, 1 process, {prefix}: `{_short(one.get('error') or '', 300)}`")
            v = tr.get("verify", {})
            if not v.get("checks") and v.get("error"):
                out.append(f"- `{r['entry']}` {t}, verify did not run: `{_short(v['error'], 300)}`")
            left = _left_unchanged(tr, static.get((r["entry"], t), {}))
            for k, c in sorted(v.get("checks", {}).items()):
                if (left and k != "a") or (k == "a" and not orig.get("ok")):
                    continue
                if k == "a" and H.load_recipe(r["entry"]).get("no_parity") and "original loss" in c.get("detail", ""):
                    continue
                if one.get("ok") is False and k in "aef" and str(c.get("detail", "")).startswith("migrated-1 run"):
                    continue  # the one-process failure above says it
                if c.get("status") == "fail":
                    out.append(f"- `{r['entry']}` {t}, verify {k}: {_short(c.get('detail', ''), 300)}")
    return out


def render(results: Path, entries: Optional[List[Dict[str, Any]]] = None, findings: Optional[Path] = None) -> str:
    """The report from the result files; it ends with `findings` (default benchmarks/ecosystem/findings.md, the
    notes written by hand on what the figures show) when the entries are the corpus'."""
    if entries is None:
        entries = H.load_manifest()
        findings = findings or H.HERE / "findings.md"
    static = _load(results / "static.json")
    cpu = _load(results / "cpu.json")
    gpu = _load(results / "gpu.json")
    gpu1 = _load(results / "gpu1.json")  # a machine of one GPU: verify's one-process runs only (--checks a)
    L: List[str] = ["# Ecosystem check", ""]
    L.append("30 public plain-PyTorch training scripts (benchmarks/ecosystem/manifest.json: 10 simple, 10 medium, "
             "10 hard) migrated to Fabric and Accelerate with default options, checked statically, and run on CPU "
             "where the script can run here. How to run it: benchmarks/ecosystem/README.md. Generated by "
             "`python -m benchmarks.ecosystem report` from benchmarks/ecosystem/results/*.json; do not edit by hand.")
    L.append("")
    if static:
        srows = {(r["entry"], r["target"]): r for r in static["rows"]}
        L += ["## Static check", "",
              f"Date: {static['date']}. pt-migrate commit `{static['tool_commit']}`. "
              f"Versions: {', '.join(f'{k} {v}' for k, v in sorted(static.get('versions', {}).items()))}.", "",
              "```bash", "python -m benchmarks.ecosystem fetch --mirror-root /work/.mirror   # or without: git clone",
              static["command"], "```", "",
              "Per entry and target: `pt-migrate SRC --target T` in place on a copy of the entry's files. "
              "*migrated*: code changed; *unchanged, TODO*: only `# TODO(pt-migrate)` lines added; *crashed*: an "
              "internal error (PTM002). *checks*: the output parses, a second run changes nothing, no error-level "
              "diagnostic (PTM006 self-check included), no unmarked plain DDP / GradScaler / `.backward()`, and "
              "`Fabric(`/`Accelerator(` plus a setup call exist when code changed.", "",
              "| entry | difficulty | target | result | checks | TODO | self-check (PTM006) | crash (PTM002) |",
              "|---|---|---|---|---|---|---|---|"]
        tot: Dict[str, Dict[str, int]] = {}
        for e in entries:
            for t in H.TARGETS:
                r = srows.get((e["name"], t))
                if r is None:
                    continue
                s = tot.setdefault(t, {"entries": 0, "pass": 0, "migrated": 0, "unchanged, TODO": 0,
                                       "unchanged": 0, "crashed": 0, "selfcheck": 0, "no source": 0, "todo": 0})
                s["entries"] += 1
                s[r["status"]] = s.get(r["status"], 0) + 1
                s["pass"] += 1 if r["ok"] else 0
                s["selfcheck"] += 1 if r.get("selfcheck") else 0
                s["todo"] += r.get("todo") or 0
                checks = "pass" if r["ok"] else ("n/a" if r["ok"] is None else f"**fail** ({len(r['failures'])})")
                L.append("| " + " | ".join(_cell(x) for x in [
                    e["name"], e.get("difficulty", ""), t, r["status"], checks, r.get("todo", ""),
                    len(r.get("selfcheck", [])), len(r.get("crashes", []))]) + " |")
        L += ["", "Totals:", ""]
        for t, s in tot.items():
            L.append(f"- {t}: {s['entries']} entries; checks pass {s['pass']}; migrated {s['migrated']}, unchanged "
                     f"with TODO {s['unchanged, TODO']}, unchanged {s['unchanged']}, crashed {s['crashed']}; "
                     f"self-check fired on {s['selfcheck']}; {s['todo']} TODO lines in all")
        L += ["", "### Static failures", ""]
        for e in entries:
            for t in H.TARGETS:
                r = srows.get((e["name"], t))
                if r and r["failures"]:
                    L.append(f"- `{e['name']}` {t}:")
                    for f in r["failures"]:
                        L.append(f"  - {_short(f, 400)}")
        L.append("")
    for label, data in (("CPU", cpu), ("GPU", gpu), ("one GPU", gpu1)):
        if not data and label == "one GPU":
            continue
        if not data:
            if label == "GPU":
                L += ["## GPU", "", "Not run yet: `benchmarks/ecosystem/gpu.sh` on `nvidia-h200-x2` writes "
                      "results/gpu.json (see the README).", ""]
            continue
        what = "one process: check a only" if label == "one GPU" else f"{data.get('devices', 2)} processes for verify"
        L += [f"## Runtime on {label} ({what})", "",
              f"Date: {data['date']}. pt-migrate commit `{data['tool_commit']}`. "
              f"Versions: {', '.join(f'{k} {v}' for k, v in sorted(data.get('versions', {}).items()))}.", "",
              "```bash", data["command"], "```", "",
              f"*original*: the script as published, on one process, with its stand-in data, stopped after a few "
              f"optimizer steps by the verify runner (which observes and edits nothing). The other columns are "
              f"`pt-migrate verify ORIGINAL --target T --migrated MIGRATED --devices {data.get('devices', 2)}` on "
              f"the migration made for {data.get('devices', 2)} processes ({_migrate_options(data)}, launched "
              f"under torchrun): *migrated, 1 process* "
              f"is its check (a) run (Fabric held to one device), *a parity* its per-step losses against the "
              f"original's (rtol 1e-4, atol 1e-5); b-e and k as `pt-migrate verify --help` says (k: no file written by "
              f"more than one rank, in the steps run; results from before check k existed show —).", ""]
        smap = {(r["entry"], r["target"]): r for r in static["rows"]} if static else {}
        L += _runtime_totals(data, smap) + [""]
        L += _runtime_rows(data, entries, smap, label) + [""]
        L += ["### Not run, and why", ""] + _not_runnable(data, entries) + [""]
        L += ["### Runtime failures", "",
              "A *fault* is a migrated script that fails where its original runs. Checks b-e of an entry that the "
              "migration left unchanged (TODO lines only, or refused by its self-check) are not listed: the script is still single-process. A check (a) needs an original that runs.", ""]
        L += (_runtime_failures(data, smap) or ["none"]) + [""]
    if findings is not None and findings.exists():
        L += [findings.read_text().rstrip(), ""]
    return "\n".join(L).rstrip() + "\n"
