"""The command line: a thin layer over migrator.runner and the engine."""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import List, Optional

import click

from migrator import __version__
from migrator.files import SourceError, decode, encode, write_atomic
from migrator.launch import launch_lines
from migrator.options import LAUNCHERS, TARGETS, Options
from migrator.runner import FileOutcome, migrate_paths, migrate_source
from migrator.walk import python_files

EXAMPLES = """\b
Examples:
  pt-migrate train.py --target fabric                 rewrite train.py in place
  pt-migrate train.py --target fabric --accelerator cpu --devices 2 --strategy ddp
  pt-migrate src/ --target accelerate --diff          show what would change
  pt-migrate src/ --target fabric --check             exit 1 if anything would change
  pt-migrate train.py --target fabric -o train_fabric.py
  cat train.py | pt-migrate - --target accelerate > train_acc.py
  pt-migrate verify train.py --target fabric          prove a migration by running it
  pt-migrate rules | pt-migrate explain PTM107        the rule reference

Exit status: 0 done, 1 changes pending (--check/--diff), 2 errors (other files are still processed).
"""

SUBCOMMANDS = ("verify", "rules", "explain")


def _options(accelerator, devices, strategy, precision, num_nodes, launcher, select, ignore) -> Options:
    return Options(accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
                   num_nodes=num_nodes, launcher=launcher,
                   select=frozenset(s for s in select.split(",") if s) if select else frozenset(),
                   ignore=frozenset(s for s in ignore.split(",") if s) if ignore else frozenset())


def _expand(paths: List[str]) -> List[str]:
    out: List[str] = []
    for p in paths:
        path = Path(p)
        if p != "-" and path.is_dir():
            out.extend(str(f) for f in python_files(path))
        else:
            out.append(p)
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXAMPLES)
@click.argument("paths", nargs=-1, required=True)
@click.option("--target", "-t", type=click.Choice(TARGETS), required=True, help="Framework to migrate to.")
@click.option("--diff", "show_diff", is_flag=True, help="Print a unified diff; write nothing.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any file would change.")
@click.option("-o", "--output", type=str, help="Write the result here (one input only; '-' for stdout).")
@click.option("--accelerator", type=str, help="Fabric accelerator (cpu, cuda, auto); 'cpu' sets Accelerator(cpu=True).")
@click.option("--devices", type=str, help="Fabric devices (e.g. 2). Without it, torchrun's environment decides.")
@click.option("--strategy", type=str, help="Fabric strategy (e.g. ddp, fsdp).")
@click.option("--precision", type=str, help="16-mixed, bf16-mixed, 32-true (Accelerate: fp16, bf16, no).")
@click.option("--num-nodes", type=int, help="Fabric num_nodes.")
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="launch", show_default=True,
              help="'launch': Fabric(...) + fabric.launch(); 'fabric-run': for scripts started with `fabric run`.")
@click.option("--select", type=str, help="Comma-separated rule codes to run (prefixes allowed).")
@click.option("--ignore", type=str, help="Comma-separated rule codes to skip.")
@click.option("-j", "--jobs", type=int, default=0, help="Worker processes for trees (0: all cores).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary.")
@click.option("--debug", is_flag=True, help="Show Python tracebacks of internal errors.")
@click.version_option(__version__, prog_name="pt-migrate")
def migrate_command(paths, target, show_diff, check, output, accelerator, devices, strategy, precision, num_nodes,
                    launcher, select, ignore, jobs, quiet, debug):
    """Migrate plain PyTorch training scripts to Lightning Fabric or Hugging Face Accelerate.

    PATHS are files or folders (every .py under a folder); '-' reads standard input.
    """
    options = _options(accelerator, devices, strategy, precision, num_nodes, launcher, select, ignore)
    err = click.get_text_stream("stderr")
    if output and (len(paths) != 1):
        raise click.UsageError("-o/--output takes exactly one input path")
    if output and output != "-" and Path(output).is_dir():
        raise click.UsageError(f"-o/--output {output!r} is a directory; give a file name")
    files = _expand(list(paths))
    outcomes: List[FileOutcome] = []
    if files == ["-"]:
        outcomes.append(_stdin(target, options))
    else:
        outcomes.extend(migrate_paths(files, target, options, jobs=jobs if jobs > 0 else (os.cpu_count() or 1)))
    errors = 0
    for o in outcomes:
        if o.error:
            errors += 1
            click.echo(f"{o.path}:{o.error}" if o.error[:1].isdigit() else f"{o.path}: error: {o.error}", file=err)
        if o.result and not quiet:
            for d in o.result.diagnostics:
                if not d.code.startswith("PTM00"):
                    click.echo(d.render(o.path), file=err)
        if o.error:
            continue
        to_stdout = o.path == "-" or output == "-"
        if show_diff:
            click.echo(o.diff(), nl=False)
        elif check:
            pass
        elif to_stdout:
            click.echo(o.result.code if o.result else o.old_text, nl=False)
        elif output:
            try:
                write_atomic(Path(output), o.new_bytes if o.changed else encode(decode(Path(o.path).read_bytes()), o.old_text))
            except (SourceError, OSError) as e:
                errors += 1
                click.echo(f"{output}: error: {e}", file=err)
        elif o.changed:
            try:
                write_atomic(Path(o.path), o.new_bytes)
            except (SourceError, OSError) as e:
                errors += 1
                click.echo(f"{o.path}: error: {e}", file=err)
    _summary(outcomes, target, options, err, pending=show_diff or check)
    if errors:
        sys.exit(2)
    if (show_diff or check) and any(o.changed for o in outcomes):
        sys.exit(1)


def _stdin(target: str, options: Options) -> FileOutcome:
    data = click.get_binary_stream("stdin").read()
    try:
        src = decode(data)
    except SourceError as e:
        return FileOutcome("-", error=str(e))
    return migrate_source("-", src, target, options)


def _summary(outcomes: List[FileOutcome], target: str, options: Options, err, pending: bool) -> None:
    changed = [o for o in outcomes if o.changed]
    attention = sum(len(o.result.needs_attention) for o in outcomes if o.result and not o.error)
    errors = sum(1 for o in outcomes if o.error)
    verb = "would migrate" if pending else "migrated"
    click.echo(f"pt-migrate: {verb} {len(changed)} of {len(outcomes)} file(s) to {target}; "
               f"{attention} item(s) need attention; {errors} error(s).", file=err)
    scripts = [o for o in changed if o.result.is_training_script and ("Fabric(" in o.result.code or "Accelerator(" in o.result.code)]
    for o in scripts[:5]:
        click.echo(f"To run {o.path} on several devices:", file=err)
        for line in launch_lines(o.path, target, options):
            click.echo(f"  {line}", file=err)


def main(argv: Optional[List[str]] = None) -> None:
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
