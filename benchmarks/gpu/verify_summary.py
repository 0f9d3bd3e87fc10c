"""Summary of call1_verify.sh: `verify_summary.py JOBS REPORTS N STEPS OUT.tsv` writes the TSV and prints Markdown.

Per fixture and target: each check's status (a-f), check a's precision, tolerance and max |diff|, the speed-up of
check f, the job's exit code and seconds; a job without a report says why (not started, stopped, no JSON).
"""
import json
import sys
from pathlib import Path

CHECKS = "abcdef"


def row(case, target, reports):
    base = reports / f"{case}.{target}"
    r = {"fixture": case, "target": target, **{c: "" for c in CHECKS}, "precision": "", "rtol": "",
         "max_abs_diff": "", "speedup": "", "exit": "", "seconds": "", "note": ""}
    if not base.with_name(base.name + ".json").exists():
        note = base.with_name(base.name + ".notrun")
        r["note"] = note.read_text().strip() if note.exists() else "not run"
        for c in CHECKS:
            r[c] = "not run"
        return r
    rc = base.with_name(base.name + ".rc")
    if rc.exists():
        parts = rc.read_text().split()
        r["exit"], r["seconds"] = parts[0], parts[1] if len(parts) > 1 else ""
    try:
        report = json.loads(base.with_name(base.name + ".json").read_text())
    except ValueError:
        log = base.with_name(base.name + ".log")
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        why = "stopped at the call's budget" if r["exit"] in ("124", "137", "143") else "no JSON report"
        r["note"] = why + (": " + tail[0][:200] if tail else "")
        for c in CHECKS:
            r[c] = "no report"
        return r
    if report.get("error"):
        r["note"] = report["error"][:300]
    for c in report.get("checks", []):
        r[c["id"]] = c["status"]
        data = c.get("data") or {}
        if c["id"] == "a":
            r["precision"] = data.get("precision", "")
            r["rtol"] = data.get("rtol", "")
            if "max_abs_diff" in data:
                r["max_abs_diff"] = f"{data['max_abs_diff']:.3g}"
            if c["status"] != "pass":
                r["note"] = (r["note"] + "; " if r["note"] else "") + "a: " + c["message"].splitlines()[0][:300]
        elif c["id"] == "f" and data.get("speedup"):
            r["speedup"] = f"{data['speedup']:.2f}"
        elif c["status"] in ("fail", "skip"):
            r["note"] = (r["note"] + "; " if r["note"] else "") + f"{c['id']}: " + c["message"].splitlines()[0][:200]
    return r


def main(jobs, reports, n, steps, tsv):
    reports = Path(reports)
    rows = []
    for line in Path(jobs).read_text().splitlines():
        case, _entry, target, _lock = line.split()
        rows.append(row(case, target, reports))
    cols = ["fixture", "target", *CHECKS, "precision", "rtol", "max_abs_diff", "speedup", "exit", "seconds", "note"]
    rows.sort(key=lambda r: (r["fixture"], r["target"] != "fabric"))
    with open(tsv, "w") as f:
        f.write("\t".join(cols) + "\n")
        for r in rows:
            f.write("\t".join(str(r[c]).replace("\t", " ").replace("\n", " ") for c in cols) + "\n")
    ran = [r for r in rows if r["a"] not in ("not run", "no report")]
    full = [r for r in ran if all(r[c] in ("pass", "info") for c in CHECKS)]
    print(f"GPU verify: {n} devices, {steps} steps, checks a-f; {len(rows)} fixture-target pairs, {len(ran)} ran, "
          f"{len(full)} passed every check\n")
    print("| fixture | target | a | b | c | d | e | f | parity: precision, rtol, max abs diff | f speed-up | s | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        par = ", ".join(str(x) for x in (r["precision"], r["rtol"], r["max_abs_diff"]) if x != "")
        note = r["note"].replace("|", "\\|")
        print(f"| {r['fixture']} | {r['target']} | " + " | ".join(r[c] for c in CHECKS)
              + f" | {par} | {r['speedup']} | {r['seconds']} | {note} |")


if __name__ == "__main__":
    main(*sys.argv[1:6])
