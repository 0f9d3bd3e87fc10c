"""Put the results of the two device calls of issue #16 into the docs.

    python benchmarks/gpu/update_docs.py DIR [DIR2]

DIR (and DIR2): the folders where the device tool put the files of call 1 and/or call 2 (its files_at). Files it
uses: verify-summary.md (call1_verify.sh) -> docs/verification.md, between the markers
<!-- gpu-2x-verify:start --> and <!-- gpu-2x-verify:end -->; bench-report.md (call2_bench.sh) -> docs/performance.md,
between <!-- gpu-2x-bench:start --> and <!-- gpu-2x-bench:end -->. The section is replaced whole, with the date, the
command and the tables; the raw files are copied to benchmarks/gpu/results-<date>-h200x2-*.{tsv,md,txt} (committed)
so the figures can be traced. Text outside the markers is never touched.
"""
import datetime
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TODAY = datetime.date.today().isoformat()


def replace(doc: Path, name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{doc}: markers {start} / {end} missing")
    new = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{body.rstrip()}\n{end}", text,
                 count=1, flags=re.S)
    doc.write_text(new)
    print(f"updated {doc.relative_to(ROOT)} ({name})")


def keep(src: Path, kind: str, suffix: str) -> str:
    dst = ROOT / "benchmarks" / "gpu" / f"results-{TODAY}-h200x2-{kind}{suffix}"
    shutil.copyfile(src, dst)
    return str(dst.relative_to(ROOT))


def verify_section(d: Path) -> str:
    summary = (d / "verify-summary.md").read_text().strip()
    kept = [keep(d / "verify-summary.tsv", "verify", ".tsv")] if (d / "verify-summary.tsv").exists() else []
    log = (d / "call1.log").read_text(errors="replace") if (d / "call1.log").exists() else ""
    head = next((ln for ln in log.splitlines() if ln.startswith("call1:")), "")
    took = next((ln for ln in reversed(log.splitlines()) if ln.startswith("call1: done")), "")
    env = next((ln for ln in log.splitlines() if ln.startswith("torch ")), "")
    return f"""## GPU: `pt-migrate verify` on two NVIDIA H200 (issue #16)

Date: {TODAY}. Machine: the device tool's `nvidia-h200-x2` ({env or 'versions in call1.log'}). {head}
Command (one device call, `carry: [".whl", "benchmarks/gpu/migrated"]`, README in benchmarks/gpu/):

```bash
bash benchmarks/gpu/call1_verify.sh "$OUT"     # {took or 'see call1.log'}
```

Every fixture with goldens for both targets (noop_* and static_only.json aside), both targets, 20 steps, checks
a-f, `--accelerator cuda --devices 2`, several verifies at a time. Check a's tolerance follows the precision the runs
trained in (fp32 rtol 1e-4, atol 1e-5; fp16 rtol 2e-3; bf16 rtol 1e-2) and every run uses deterministic kernels
(verify's default on CUDA). Check f's speed-up is for information only: 12 verifies shared the two GPUs and 32
cores. Raw rows: {', '.join(kept) or 'verify-summary.tsv'}; the JSON reports came back in
verify-reports.tar.gz (not committed).

{summary}
"""


def bench_section(d: Path) -> str:
    report = (d / "bench-report.md").read_text().strip()
    kept = [keep(d / "results.tsv", "bench", ".tsv")] if (d / "results.tsv").exists() else []
    if (d / "profiles.txt").exists():
        kept.append(keep(d / "profiles.txt", "profiles", ".txt"))
    log = (d / "call2.log").read_text(errors="replace") if (d / "call2.log").exists() else ""
    took = next((ln for ln in reversed(log.splitlines()) if ln.startswith("call2: done")), "")
    # the report's own title line is replaced by this section's
    body = "\n".join(ln for ln in report.splitlines() if not ln.startswith("# call2 benchmark"))
    body = re.sub(r"^## ", "#### ", body, flags=re.M)
    return f"""## GPU benchmark of migrated scripts: two H200 (issue #16)

Date: {TODAY}. Machine: the device tool's `nvidia-h200-x2`. After `bash benchmarks/gpu/prepare.sh 2` here, one
device call (`carry: [".whl", "benchmarks/gpu/migrated"]`):

```bash
bash benchmarks/gpu/call2_bench.sh "$OUT"     # {took or 'see call2.log'}
```

GPT model, 2 GPUs, 3 interleaved rounds of 80 warm-up and 150 timed steps per run; medians of the rounds and
spreads ((max - min) / median). `ddpopt`: the migrated script with `gradient_as_bucket_view=True, static_graph=True`
passed through Fabric's `DDPStrategy` / Accelerate's `DistributedDataParallelKwargs` (benchmarks/gpu/ddp_kwargs_variant.py).
Profiles: torch.profiler on rank 0 over 5 warm-up steps of round 1. Raw files: {', '.join(kept)}.

{body}
"""


def main(dirs):
    done = False
    for d in map(Path, dirs):
        if (d / "verify-summary.md").exists():
            replace(ROOT / "docs" / "verification.md", "gpu-2x-verify", verify_section(d))
            done = True
        if (d / "bench-report.md").exists():
            replace(ROOT / "docs" / "performance.md", "gpu-2x-bench", bench_section(d))
            done = True
    if not done:
        raise SystemExit("no verify-summary.md or bench-report.md in " + ", ".join(dirs))


if __name__ == "__main__":
    main(sys.argv[1:])
