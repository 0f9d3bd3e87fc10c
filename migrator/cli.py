"""The command line: a thin layer over migrator.runner and the engine."""
from __future__ import annotations

import dataclasses
import gc
import os
import sys
import traceback
from pathlib import Path
from typing import Iterator, List, Optional

import click

from migrator import __version__
from migrator.files import SourceError, decode, encode, write_atomic
from migrator.launch import is_entry_script, launch_lines, reads_rank_env
from migrator import report
from migrator.config import Config, ConfigError, discover
from migrator.options import LAUNCHERS, MATMUL_PRECISIONS, TARGETS, Options
from migrator.runner import FileOutcome, check_together, migrate_paths, migrate_source
from migrator.walk import excluded, python_files

EXAMPLES = """\b
Examples:
  pt-migrate train.py --target fabric                 rewrite train.py in place
  pt-migrate train.py --target fabric --accelerator cpu --devices 2 --strategy ddp
  pt-migrate src/ --target accelerate --diff          show what would change
  pt-migrate src/ --target fabric --check             exit 1 if anything would change
  pt-migrate train.py --target fabric -o train_fabric.py
  cat train.py | pt-migrate - --target accelerate > train_acc.py
  pt-migrate verify train.py --target fabric          prove a migration by running it
  pt-migrate src/ --target fabric --diff --format github   annotations for a pull request
  pt-migrate src/ --diff --format markdown >> "$GITHUB_STEP_SUMMARY"
  pt-migrate rules ; pt-migrate explain PTM107        the rule reference

Settings may live in pyproject.toml under [tool.pt-migrate] (target, select, ignore, exclude, ...);
flags override them. `# pt-migrate: skip-file` / `# pt-migrate: skip` opt a file / a statement out.

Exit status: 0 done, 1 changes pending (--check/--diff), 2 errors (other files are still processed).
"""

SUBCOMMANDS = ("verify", "rules", "explain")
FORMATS = ("text", "github", "json", "markdown")


def _options(accelerator, devices, strategy, precision, num_nodes, launcher, select, ignore,
             matmul_precision=None) -> Options:
    return Options(accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
                   num_nodes=num_nodes, launcher=launcher, matmul_precision=matmul_precision,
                   select=frozenset(s for s in select.split(",") if s) if select else frozenset(),
                   ignore=frozenset(s for s in ignore.split(",") if s) if ignore else frozenset())


def _expand(paths: List[str], config: Config, cli_exclude: List[str], force_exclude: bool) -> List[str]:
    """Files of the run. Config excludes match relative to the pyproject.toml folder, --exclude ones relative to
    the folder walked (and to the working directory); both also match any file or folder name on the way."""
    conf_ex = list(config.get("exclude", []))
    patterns = conf_ex + list(cli_exclude)
    root = config.root

    def dropped(f: str) -> bool:
        absolute = Path(os.path.realpath(f))  # not resolve(): it raises on a symlink loop
        return (bool(conf_ex) and root is not None and excluded(absolute, root, conf_ex)) or \
            (bool(cli_exclude) and excluded(absolute, Path.cwd(), cli_exclude))

    out: List[str] = []
    for p in paths:
        path = Path(p)
        if p != "-" and path.is_dir():
            out.extend(str(f) for f in python_files(path, patterns) if not dropped(str(f)))
        elif p != "-" and force_exclude and patterns and dropped(p):
            continue
        else:
            out.append(p)
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXAMPLES)
@click.argument("paths", nargs=-1, required=True)
@click.option("--target", "-t", type=click.Choice(TARGETS), help="Framework to migrate to (or `target` in config).")
@click.option("--diff", "show_diff", is_flag=True, help="Print a unified diff; write nothing.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any file would change.")
@click.option("-o", "--output", type=str, help="Write the result here (one input only; '-' for stdout).")
@click.option("--accelerator", type=str, help="Fabric accelerator (cpu, cuda, auto); 'cpu' sets Accelerator(cpu=True).")
@click.option("--devices", type=str, help="Fabric devices (e.g. 2). Without it, torchrun's environment decides.")
@click.option("--strategy", type=str, help="Fabric strategy (e.g. ddp, fsdp).")
@click.option("--precision", type=str, help="16-mixed, bf16-mixed, 32-true (Accelerate: fp16, bf16, no).")
@click.option("--num-nodes", type=int, help="Fabric num_nodes.")
@click.option("--matmul-precision", type=click.Choice(MATMUL_PRECISIONS),
              help="Opt-in: add torch.set_float32_matmul_precision(...) after the framework object ('high': "
                   "float32 matmuls on TF32 tensor cores).")
@click.option("--launcher", type=click.Choice(LAUNCHERS),
              help="'launch' (default): Fabric(...) + fabric.launch(); 'fabric-run': for scripts started with "
                   "`fabric run`.")
@click.option("--select", type=str, help="Comma-separated rule codes to run (prefixes allowed).")
@click.option("--ignore", type=str, help="Comma-separated rule codes to skip.")
@click.option("--exclude", "cli_exclude", multiple=True, metavar="GLOB",
              help="Skip matching files/folders in folder walks (repeatable; adds to config `exclude`).")
@click.option("--force-exclude", is_flag=True, help="Apply excludes to files named on the command line too "
                                                    "(the pre-commit hook does).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text; github: workflow annotations; json: the stable report (README); markdown: a summary "
                   "for $GITHUB_STEP_SUMMARY.")
@click.option("--color/--no-color", "color", default=None, help="Colour (default: only on a terminal; NO_COLOR "
                                                                  "turns it off).")
@click.option("--config", "config_file", type=str, metavar="FILE",
              help="pyproject.toml to read [tool.pt-migrate] from (default: the nearest above the first path).")
@click.option("--exit-non-zero-on-fix", is_flag=True, help="Exit 1 when files were rewritten (for pre-commit).")
@click.option("-j", "--jobs", type=int, default=0, help="Worker processes at most (0: one per core); a run whose work is small stays in one process.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary.")
@click.option("--debug", is_flag=True, help="Show Python tracebacks of internal errors, and how the files were "
                                            "split between processes.")
@click.version_option(__version__, prog_name="pt-migrate")
def migrate_command(paths, target, show_diff, check, output, accelerator, devices, strategy, precision, num_nodes,
                    matmul_precision, launcher, select, ignore, cli_exclude, force_exclude, fmt, color, config_file,
                    exit_non_zero_on_fix, jobs, quiet, debug):
    """Migrate plain PyTorch training scripts to Lightning Fabric or Hugging Face Accelerate.

    PATHS are files or folders (every .py under a folder); '-' reads standard input.
    """
    err = sys.stderr
    out = sys.stdout
    try:
        config = discover(list(paths), config_file)
    except ConfigError as e:
        click.echo(f"pt-migrate: error: {e}", file=err)
        sys.exit(2)
    for warning in config.warnings:
        click.echo(f"pt-migrate: warning: {warning}", file=err)

    def pick(value, key):
        return value if value is not None else config.get(key)

    target = pick(target, "target")
    if target is None:
        raise click.UsageError("no target: give --target fabric|accelerate, or set `target` under "
                               "[tool.pt-migrate] in pyproject.toml")
    options = _options(pick(accelerator, "accelerator"), pick(devices, "devices"), pick(strategy, "strategy"),
                       pick(precision, "precision"), pick(num_nodes, "num-nodes"), pick(launcher, "launcher") or "launch",
                       pick(select, "select"), pick(ignore, "ignore"), pick(matmul_precision, "matmul-precision"))
    if output and (len(paths) != 1):
        raise click.UsageError("-o/--output takes exactly one input path")
    if output and output != "-" and (Path(output).is_dir() or output.endswith(("/", os.sep))):
        raise click.UsageError(f"-o/--output {output!r} is a directory; give a file name")
    err_color = fmt == "text" and report.use_color(err, color)
    out_color = fmt == "text" and report.use_color(out, color)
    files = _expand(list(paths), config, list(cli_exclude), force_exclude)

    def stream_outcomes() -> Iterator[FileOutcome]:
        if files == ["-"]:
            yield _stdin(target, options)
            return
        stream = migrate_paths(files, target, options, jobs=max(jobs, 0))  # 0: from the work (runner)
        tree = any(p != "-" and Path(p).is_dir() for p in paths)
        if tree and len(files) > 1 and not quiet and _isatty(err):
            with click.progressbar(stream, length=len(files), label="pt-migrate", file=err,
                                   show_pos=True, color=err_color) as bar:
                stream = list(bar)
        if len(files) > 1:  # calls between the files of the run must still fit (the engine's self-check)
            stream = check_together(list(stream))
        yield from stream

    # each outcome is reported and written as it arrives; only the changed files keep their text (for the
    # reports' diffs), so a run over a large tree stays flat in memory
    outcomes: List[FileOutcome] = []
    errors = written = 0
    for o in stream_outcomes():
        outcomes.append(o)
        try:
            if o.error:
                errors += 1
                msg = f"{o.path}:{o.error}" if o.error[:1].isdigit() else f"{o.path}: error: {o.error}"
                click.echo(click.style(msg, fg="red") if err_color else msg, file=err)
                if debug and o.result is not None and getattr(o.result, "trace", None):
                    click.echo(o.result.trace, file=err, nl=False)
            if o.result and not quiet and fmt == "text":
                for d in o.result.diagnostics:
                    if d.code not in ("PTM000", "PTM001", "PTM002", "PTM003"):
                        click.echo(_render(d, o.path, err_color), file=err)
            if o.error:
                continue
            to_stdout = output == "-" or (o.path == "-" and not output)
            if show_diff:
                if fmt == "text" and o.changed:
                    diff = report.unified_diff(o.path, o.old_text, o.result.code)
                    click.echo(report.color_diff(diff) if out_color else diff, nl=False, file=out)
            elif check:
                pass
            elif to_stdout:
                click.echo(o.result.code if o.result else o.old_text, nl=False)
            elif output:
                try:
                    unchanged = (o.old_text.encode("utf-8") if o.path == "-"
                                 else encode(decode(Path(o.path).read_bytes()), o.old_text))
                    write_atomic(Path(output), o.new_bytes if o.changed else unchanged)
                    written += o.changed
                except (SourceError, OSError) as e:
                    errors += 1
                    click.echo(f"{output}: error: {e}", file=err)
                    o.error = f"{output}: {e}"  # counted in the summary and reports
            elif o.changed:
                try:
                    write_atomic(Path(o.path), o.new_bytes)
                    written += 1
                except (SourceError, OSError) as e:
                    errors += 1
                    click.echo(f"{o.path}: error: {e}", file=err)
                    o.error = str(e)  # counted in the summary and reports; the file is unchanged
        finally:
            if not o.changed:
                _drop_text(o)
    mode = "diff" if show_diff else ("check" if check else "write")
    if fmt == "json":
        click.echo(report.json_report(outcomes, target, mode), nl=False, file=out)
    elif fmt == "markdown":
        click.echo(report.markdown_report(outcomes, target, mode), nl=False, file=out)
    elif fmt == "github":
        click.echo(report.github_annotations(outcomes), nl=False, file=out)
    _summary(outcomes, target, options, err, pending=show_diff or check, color=err_color,
             launch=fmt == "text" and not quiet)
    if debug and files != ["-"]:
        from migrator import runner
        click.echo(f"pt-migrate: debug: the files went to {runner.last_plan}", file=err)
    if errors or any(report.error_count(o) for o in outcomes):  # a self-check refusal (PTM006) is an error too
        sys.exit(2)
    if (show_diff or check) and any(o.changed for o in outcomes):
        sys.exit(1)
    if exit_non_zero_on_fix and written:
        sys.exit(1)


def _drop_text(o: FileOutcome) -> None:
    """An unchanged file's text is not needed after it was written out (stdout, -o): nothing reports on it."""
    o.old_text = ""
    if o.result is not None:
        o.result = dataclasses.replace(o.result, code="")


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def _render(d, path: str, color: bool) -> str:
    if not color:
        return d.render(path)
    code = click.style(d.code, fg="red" if d.severity == "error" else ("green" if d.fixed else "yellow"), bold=True)
    mark = click.style(" [*]", fg="green") if d.fixed else ""
    return f"{click.style(f'{path}:{d.line}:{d.column}:', bold=True)} {code}{mark} {d.message}"


def _stdin(target: str, options: Options) -> FileOutcome:
    data = sys.stdin.buffer.read()
    try:
        src = decode(data)
    except SourceError as e:
        return FileOutcome("-", error=str(e))
    return migrate_source("-", src, target, options)


def _summary(outcomes: List[FileOutcome], target: str, options: Options, err, pending: bool, color: bool = False,
             launch: bool = True) -> None:
    changed = [o for o in outcomes if o.changed]
    attention = sum(len(o.result.needs_attention) for o in outcomes if o.result and not o.error)
    errors = sum(report.error_count(o) for o in outcomes)  # as the JSON report's summary counts them
    verb = "would migrate" if pending else "migrated"
    line = (f"pt-migrate: {verb} {len(changed)} of {len(outcomes)} file(s) to {target}; "
            f"{attention} item(s) need attention; {errors} error(s).")
    if color:
        line = click.style(line, fg="red" if errors else ("yellow" if attention else "green"), bold=True)
    click.echo(line, file=err)
    if not any(o.result is not None and o.result.is_training_script for o in outcomes) and not errors:
        # a folder of helpers, or none: say so rather than a bare "0 of N"
        click.echo(f"pt-migrate: no training script among {len(outcomes)} file(s) (no optimizer step or backward "
                   f"found); nothing to migrate", file=err)
    if not launch:
        return
    # only scripts that are started (a main guard, or training at module level), not the helpers they call
    scripts = [o for o in changed if o.result.is_training_script and ("Fabric(" in o.result.code or
                                                                      "Accelerator(" in o.result.code)
               and is_entry_script(o.result.code)]
    for o in scripts[:5]:
        click.echo(f"To run {o.path} on several devices:", file=err)
        for line in launch_lines(o.path, target, options, _rank_env_at(o, outcomes), o.result.code):
            click.echo(f"  {line}", file=err)


def _rank_env_at(script, outcomes) -> Optional[str]:
    """Where the script, or a module beside it that the script imports, reads RANK (migrator.launch.reads_rank_env):
    the migrated text where the run changed it, the file's text otherwise."""
    from migrator.project import imports_sibling

    changed = {str(o.path): o.result.code for o in outcomes if o.result and o.changed}
    own = changed.get(str(script.path), script.result.code)
    texts = {str(script.path): own}
    here = Path(script.path)
    try:
        siblings = sorted(here.parent.glob("*.py"))[:200]
    except OSError:
        siblings = []
    for p in siblings:
        if p.stem == here.stem or not imports_sibling(own, {p.stem}):
            continue
        try:
            texts[str(p)] = changed.get(str(p)) or p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            pass
    return reads_rank_env(texts)


def main(argv: Optional[List[str]] = None) -> None:
    # libcst builds hundreds of thousands of small node objects per file (its import alone defines ~400
    # dataclasses), of which only ~1,000 end in reference cycles: the default collector threshold (700) runs a
    # collection every few hundred allocations, mostly for nothing. Rarer collections (as mypy sets them) save 3-5%
    # of a run's CPU time for ~2 MB of memory.
    gc.set_threshold(100_000, 50, 100)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        if argv and argv[0] in SUBCOMMANDS:
            from migrator import subcommands
            getattr(subcommands, argv[0])(args=argv[1:], prog_name=f"pt-migrate {argv[0]}")
        else:
            migrate_command(args=argv, prog_name="pt-migrate")
    except KeyboardInterrupt:
        click.echo("pt-migrate: interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # never a traceback for the user unless asked
        if debug:
            traceback.print_exc()
        click.echo(f"pt-migrate: internal error: {e} (run with --debug for the trace)", err=True)
        sys.exit(2)
