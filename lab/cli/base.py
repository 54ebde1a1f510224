"""The `lab` group, its exit codes, and the one place errors become a line on stderr and an exit code."""

from __future__ import annotations

import click

from lab.errors import InputError, LabError

OK, FAILED, BAD_INPUT, VERDICT_FAIL, INTERRUPTED = 0, 1, 2, 3, 130
MEANING = {OK: "success", FAILED: "runtime failure (the stack, pretix, Docker or a run failed)",
           BAD_INPUT: "bad input: a flag, a --params file, a study YAML or a workload; nothing was changed",
           VERDICT_FAIL: "the verdict is FAIL and --fail-on-verdict was given",
           INTERRUPTED: "interrupted (Ctrl-C, SIGTERM or SIGHUP; the active faults are undone first)"}


def exits(*codes: int) -> str:
    """A command's epilog: the exit codes it can end with."""
    return "\b\nExit codes:\n" + "\n".join(f"  {code:>3}  {MEANING[code]}" for code in (OK, *codes))


class LabGroup(click.Group):
    """Catches the lab's errors once for every command: bad input (a flag click refuses, or the lab's InputError)
    exits 2, other lab errors 1; each as one line on stderr."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:  # a flag's type or choice: click names the flag and the allowed values
            where = error.ctx.command_path if error.ctx is not None else ctx.command_path
            fail(f"{error.format_message()} (see `{where} --help`)", BAD_INPUT)
        except InputError as error:
            fail(str(error), BAD_INPUT)
        except LabError as error:
            fail(str(error), FAILED)


def fail(message: str, code: int = FAILED) -> None:
    """One line on stderr (a multi-line message is joined), then exit with `code`."""
    click.secho("error: " + " ".join(line.strip() for line in str(message).splitlines() if line.strip()),
                fg="red", err=True)
    raise click.exceptions.Exit(code)


def bad_input(field: str, message: str, allowed: tuple = ()) -> InputError:
    """A flag-level input error (e.g. a combination of flags that makes no sense)."""
    return InputError.of(field, field, message, allowed)


def log_err(message: str) -> None:
    click.echo(message, err=True)


def context():
    """The deployed stack's LabContext (a BootstrapError if nothing is deployed: exit 1)."""
    from lab.experiments.context import LabContext

    return LabContext.load()


def verdict_exit(verdict: str | None, fail_on_verdict: bool) -> None:
    """Exit 3 when the verdict is FAIL and --fail-on-verdict was given (UNDECIDED and PASS exit 0)."""
    if fail_on_verdict and verdict == "FAIL":
        raise click.exceptions.Exit(VERDICT_FAIL)


fail_on_verdict_option = click.option(
    "--fail-on-verdict", is_flag=True,
    help=f"exit {VERDICT_FAIL} when the verdict is FAIL (for a pipeline to gate on); UNDECIDED exits 0")


@click.group(cls=LabGroup, epilog=exits(FAILED, BAD_INPUT, VERDICT_FAIL, INTERRUPTED))
def main() -> None:
    """pretix-lab: deploy pretix, drive purchase load, break things, and report what happened.

    Exit codes are the same for every command: 0 success, 1 runtime failure, 2 bad input (nothing was changed),
    3 a study or analysis whose verdict is FAIL when --fail-on-verdict was given (`lab study`, `lab analyse`,
    `lab report` on a study), 130 interrupted. Each command's --help lists the codes it can end with.

    Which deployment the commands act on comes from PRETIX_LAB_PROJECT, PRETIX_LAB_VAR and the other
    PRETIX_LAB_* variables (lab/common/world.py); unset, it is the project pretix-lab in var/.
    """
    from lab.common import world

    world.check()  # a bad PRETIX_LAB_* variable stops every command here (exit 2), before anything is changed


__all__ = ["BAD_INPUT", "FAILED", "INTERRUPTED", "OK", "VERDICT_FAIL", "bad_input", "context", "exits", "fail",
           "fail_on_verdict_option", "log_err", "main", "verdict_exit"]
