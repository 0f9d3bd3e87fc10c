"""Summarise the JSON reports of benchmarks/gpu_verify.sh as a Markdown table (stdout)."""
import json
import sys
from pathlib import Path

out, n = Path(sys.argv[1]), sys.argv[2]
rows = []
for f in sorted(out.glob("*.json")):
    case, target = f.stem.rsplit(".", 1)
    try:
        report = json.loads(f.read_text())
    except ValueError:
        rows.append(f"| {case} | {target} | no report (see {f.stem}.log) | | |")
        continue
    checks = {c["id"]: c for c in report.get("checks", [])}
    marks = " ".join(f"{k}:{checks[k]['status']}" for k in sorted(checks))
    parity = checks.get("a", {}).get("message", "")
    thr = checks.get("f", {}).get("message", "")
    rows.append(f"| {case} | {target} | {marks} | {parity} | {thr} |")
print(f"GPU verify, {n} device(s)\n")
print("| fixture | target | checks | parity (a) | throughput (f) |")
print("|---|---|---|---|---|")
print("\n".join(rows))
