"""Reading what was measured: analyse, report, compare."""

from __future__ import annotations

from pathlib import Path

import click

from lab.cli.base import BAD_INPUT, FAILED, VERDICT_FAIL, bad_input, exits, fail_on_verdict_option, verdict_exit

FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command(epilog=exits(FAILED, BAD_INPUT, VERDICT_FAIL))
@click.argument("folder", type=FOLDER)
@click.option("--target", type=click.FloatRange(0, min_open=True), default=None,
              help="purchases per minute to judge and plan for [default: a study's own analysis.target_per_min, "
                   "else 800]")
@click.option("--utilisation", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="plan each module's cores at this share [default: a study's own analysis.utilisation, else 0.7]")
@fail_on_verdict_option
def analyse(folder: Path, target: float | None, utilisation: float | None, fail_on_verdict: bool) -> None:
    """Headline figures of a run or study folder: verdicts, runs, saturation, CPU per purchase, cores needed.
    A study is judged by its own analysis parameters (targets, SLOs, warm-up), as its report was."""
    from lab.report.publish import study_summary

    s = study_summary(folder, target, utilisation)
    target, utilisation = s.targets.target_per_min, s.utilisation
    click.echo(f"{s.verdict}: {folder.name} ({len(s.table)} run(s))")
    for v in s.verdicts:
        click.echo(f"  {v.label:7} {v.check}: {v.measured} (target {v.target}; {v.evidence})")
    for r in s.table.itertuples():
        click.echo(f"  run {r.run_id} [{r.kind}, {r.journey}]: {r.throughput_per_min:.0f}/min sustained, "
                   f"p50/p95/p99 {r.p50:.2f}/{r.p95:.2f}/{r.p99:.2f} s, failed {r.error_rate:.2%}")
    for r in s.saturation.itertuples():
        click.echo(f"  capacity {r.journey}: at most {r.max_throughput_per_min:.0f}/min; {r.where}")
    for journey in s.journey_costs.index:
        per, need = s.journey_costs.loc[journey], s.cores(target, journey)
        click.echo(f"  {journey}: CPU-s per purchase and cores for {target:.0f}/min at {utilisation:.0%}: "
                   + ", ".join(f"{m} {per[m]:.3f} s -> {need[m]:.2f}" for m in per.index)
                   + f"; total {per.sum():.3f} s -> {need.sum():.2f} cores")
    verdict_exit(s.verdict, fail_on_verdict)


@click.command(epilog=exits(FAILED, BAD_INPUT, VERDICT_FAIL))
@click.argument("folder", type=FOLDER)
@click.option("--pdf/--no-pdf", default=True, show_default=True, help="also print a PDF with headless Chromium")
@fail_on_verdict_option
def report(folder: Path, pdf: bool, fail_on_verdict: bool) -> None:
    """Publish a run or study folder as reports/<name>/index.html (+ report.pdf) through 04-analysis.
    On a study, --fail-on-verdict exits 3 when the published verdict is FAIL."""
    from lab.evidence.secretscan import check_or_fail
    from lab.report.publish import report_run, study_verdict

    html = report_run(folder, pdf=pdf)
    click.echo(f"report: {html}" + (f" and {html.with_name('report.pdf')}" if pdf else ""))
    check_or_fail([html.parent], click.echo)  # the published files, searched for every secret
    verdict_exit(study_verdict(folder), fail_on_verdict)


@click.command(epilog=exits(FAILED, BAD_INPUT))
@click.argument("folders", nargs=-1, required=True, type=FOLDER)
@click.option("--label", "labels", multiple=True, help="a short label per run, in order (repeatable)")
@click.option("--name", help="report folder name under reports/ (default from the run names)")
@click.option("--pdf/--no-pdf", default=True, show_default=True, help="also print a PDF with headless Chromium")
def compare(folders: tuple[Path, ...], labels: tuple[str, ...], name: str | None, pdf: bool) -> None:
    """Compare two or more runs (e.g. sync vs async replication) through 05-compare; baseline first. Two study
    folders: their headline figures side by side, each difference said to be beyond the noise or not."""
    from lab.report.publish import report_compare

    if len(folders) == 2 and all((f / "study.json").exists() for f in folders):
        from lab.analysis.compare import compare_studies
        from lab.report.publish import study_summary

        table = compare_studies(study_summary(folders[0]), study_summary(folders[1]))
        click.echo(f"baseline {folders[0].name} vs {folders[1].name}")
        click.echo(table.to_string(index=False))
        return
    if len(folders) < 2 and not any((f / "runs").is_dir() for f in folders):
        raise bad_input("FOLDERS", "compare needs two or more run folders (or a study folder)")
    if labels and len(labels) != len(folders):
        raise bad_input("--label", f"--label given {len(labels)} times for {len(folders)} folders; give one per "
                        "folder or none")
    html = report_compare(list(folders), list(labels), name, pdf=pdf)
    click.echo(f"report: {html}" + (f" and {html.with_name('report.pdf')}" if pdf else ""))


def register(main: click.Group) -> None:
    for command in (analyse, report, compare):
        main.add_command(command)
