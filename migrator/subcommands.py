"""Subcommands of pt-migrate: verify, rules, explain."""
from __future__ import annotations

import click

from migrator.rules import BY_CODE, REGISTRY


@click.command()
def rules():
    """List the rules: code, name, targets, fix safety."""
    for r in REGISTRY:
        click.echo(f"{r.code}  {r.name:<24} {','.join(r.targets):<19} {r.fix_safety}")


@click.command()
@click.argument("code")
def explain(code):
    """Print a rule's documentation."""
    rule = BY_CODE.get(code.upper())
    if rule is None:
        raise click.UsageError(f"unknown rule {code!r}; `pt-migrate rules` lists them")
    click.echo(f"{rule.code} {rule.name}\n")
    click.echo(type(rule).__module__ and __import__(type(rule).__module__, fromlist=["x"]).__doc__ or "")


def verify(args, prog_name):
    from migrator.verify.command import verify as command
    command(args=args, prog_name=prog_name)
