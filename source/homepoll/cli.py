"""Command line: argument parsing and one small function per command.

Every command turns a bad config into one line per problem and exit 78, never a
traceback; the commands themselves live in the modules they drive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from homepoll import __version__
from homepoll.config import (
    Config,
    ConfigError,
    default_config_path,
    describe_config,
    load_config,
    secret_problems,
)
from homepoll.errors import EX_CONFIG, EX_USAGE, UsageError
from homepoll.hardening import harden_process
from homepoll.safetext import escape_control
from homepoll.timefmt import iso_utc

EXIT_OK, EXIT_FAILED = 0, 1


class UsageProblem(Exception):
    """Unreadable input a command was given (a cookie export): exit 78, like a bad config."""


class _Parser(argparse.ArgumentParser):
    """argparse with EX_USAGE (64) instead of 2 for a bad command line, same message."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config) if args.config else default_config_path()


def _load(args: argparse.Namespace, *, require_secrets: bool = True) -> Config:
    return load_config(_config_path(args), require_secrets=require_secrets)


def _print_problems(problems: Sequence[str]) -> None:
    for problem in problems:
        print(f"homepoll: {problem}", file=sys.stderr)


# -- commands -------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from homepoll.credentials import warn_about_files
    from homepoll.daemon import data_dir_problem, run_daemon
    from homepoll.lifecycle import lock_data_dir
    from homepoll.logs import setup_logging

    config = _load(args)
    problem = data_dir_problem(config.data_dir)
    if problem:
        raise ConfigError([problem])
    if lock_data_dir(config.data_dir) is None:
        holder = (config.data_dir / "homepoll.lock").read_text().strip() or "?"
        print(
            f"homepoll: another homepoll (pid {holder}) is already running with data_dir "
            f"{config.data_dir}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    setup_logging(config.log)
    warn_about_files(config)
    code = run_daemon(config)
    logging.shutdown()
    return code


def cmd_once(args: argparse.Namespace) -> int:
    from homepoll.collectors.base import COLLECTOR_NAMES, enabled_collectors
    from homepoll.logs import setup_logging

    config = _load(args)
    if args.collector:
        if args.collector not in COLLECTOR_NAMES:
            raise UsageError(
                f"--collector: unknown collector {args.collector!r}; "
                f"known: {', '.join(COLLECTOR_NAMES)}"
            )
        names = [args.collector]
    else:
        names = enabled_collectors(config)
    problems = [line for name in names for line in secret_problems(config, name)]
    if problems:
        raise ConfigError(problems)
    if not args.dry_run:
        from homepoll.daemon import data_dir_problem

        problem = data_dir_problem(config.data_dir)
        if problem:
            raise ConfigError([problem])
    setup_logging(config.log)
    reports = asyncio.run(_once(config, names, store=not args.dry_run))
    for report in reports:
        _print_report(report, show_readings=True)
    return EXIT_OK if reports and all(r.ok for r in reports) else EXIT_FAILED


async def _once(config: Config, names: list[str], *, store: bool):
    from homepoll.poller import StorageWriter, build_runner
    from homepoll.status_file import OnceStatus, status_file_path
    from homepoll.storage import Storage

    # One poll and exit: commit it at once, so its report and status.json count it as stored
    # (at the default commit_interval it would wait for the close, after both were written).
    writer = StorageWriter(Storage(config.storage.path, commit_interval=0)) if store else None
    status = OnceStatus(status_file_path(config.data_dir)) if store else None
    reports = []
    try:
        if writer is not None:
            await writer.open()
        for name in names:
            runner = build_runner(name, config, writer=writer, status=status)
            try:
                reports.append(await runner.poll(store=store))
                await runner.publish_status(None)
            finally:
                await runner.collector.aclose()
    finally:
        if writer is not None:
            await writer.close()
    return reports


def _print_report(report, *, show_readings: bool) -> None:
    if report.ok:
        print(
            f"{report.collector}: ok, {len(report.readings)} readings ({report.stored} new), "
            f"{report.skipped} skipped, {report.attempts} attempt(s), {report.duration_ms} ms"
        )
        for note in report.notes:
            print(f"  note: {escape_control(note)}")
    else:
        print(
            f"{report.collector}: FAILED ({report.outcome}) after {report.attempts} attempt(s): "
            f"{escape_control(report.error)}"
        )
    if show_readings:
        for r in report.readings:
            when = iso_utc(r.ts / 1000, sep=" ")
            print(f"  {when}  {escape_control(r.name):<28} {r.metric:<12} {r.value:>10g} {r.unit}")


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    for warning in config.credential_warnings:  # the collector's alert at run time, not 78
        print(f"homepoll: warning: {warning}", file=sys.stderr)
    print(f"{config.path}: valid")
    print(describe_config(config))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from homepoll.health import evaluate, format_status
    from homepoll.status_file import STATUS_FILE, read_status
    from homepoll.storage import database_summary
    from homepoll.watch import notices

    config = _load(args, require_secrets=False)
    status = read_status(config.data_dir / STATUS_FILE)
    code, lines = evaluate(status, config.data_dir)
    lines += notices(config.storage.path, (status or {}).get("started_at"))
    summary = database_summary(config.storage.path)
    if args.json:
        print(
            json.dumps(
                {"exit_code": code, "problems": lines, "status": status, "database": summary},
                indent=2,
                default=str,
            )
        )
    else:
        print(format_status(status, (code, lines), summary))
    return code


def cmd_readings(args: argparse.Namespace) -> int:
    from homepoll.readout import print_readings

    return print_readings(_load(args, require_secrets=False), args)


def cmd_latest(args: argparse.Namespace) -> int:
    from homepoll.readout import print_latest

    return print_latest(_load(args, require_secrets=False), args)


def cmd_hue_pair(args: argparse.Namespace) -> int:
    from homepoll.collectors.hue.pair_command import run_hue_pair

    return run_hue_pair(_load(args, require_secrets=False), args.bridge, args.wait)


def cmd_amazon_cookies(args: argparse.Namespace) -> int:
    from homepoll.amazon_cli import UnreadableInput, amazon_cookies

    try:
        return amazon_cookies(_load(args, require_secrets=False), args.file)
    except UnreadableInput as exc:
        raise UsageProblem(str(exc)) from None


def cmd_amazon_login(args: argparse.Namespace) -> int:
    from homepoll.amazon_cli import UnreadableInput, amazon_login

    config = _load(args, require_secrets=False)
    try:
        return amazon_login(config, args.domain, args.refresh_token, args.debug_html)
    except UnreadableInput as exc:
        raise UsageProblem(str(exc)) from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from homepoll.simulator.run import run_simulators

    return run_simulators(args.hue_port, args.aqm_port, args.faults)


def cmd_demo(args: argparse.Namespace) -> int:
    from homepoll.demo import run_demo

    return run_demo(duration=args.duration, data_dir=Path(args.data_dir) if args.data_dir else None)


# -- parsing --------------------------------------------------------------------------


class _FaultListHelp(argparse.RawDescriptionHelpFormatter):
    """``simulate --help`` lists the fault names; the simulators are imported for --help only."""

    PLACEHOLDER = "(fault names)"

    def add_text(self, text: str | None) -> None:
        if text == self.PLACEHOLDER:
            from homepoll.simulator.run import fault_help

            text = fault_help()
        super().add_text(text)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default: $HOMEPOLL_CONFIG, else ./config.yaml)",
    )
    parser = _Parser(
        prog="homepoll",
        description="Poll Hue sensors and the Amazon air-quality monitor into SQLite.",
    )
    parser.add_argument("--config", metavar="PATH", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"homepoll {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str):
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    add("run", cmd_run, "run the daemon in the foreground until SIGTERM/SIGINT")
    p = add("once", cmd_once, "poll each enabled collector once through the daemon's poll path")
    p.add_argument("--collector", metavar="NAME", help="poll only this collector, even if disabled")
    p.add_argument("--dry-run", action="store_true", help="print the readings, write nothing")
    add("check-config", cmd_check_config, "validate the config and print the effective settings")
    p = add("status", cmd_status, "health per collector, open alerts, database size")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("readings", cmd_readings, "print stored readings")
    p.add_argument(
        "--since", default="1h", help="30m, 1h, 2d, or a local time like 2026-11-30T08:00"
    )
    p.add_argument("--sensor", metavar="TEXT", help="sensor name contains TEXT, or device id")
    p.add_argument("--metric", metavar="NAME", help="temperature, humidity, pm25, ...")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--utc", action="store_true", help="times in UTC instead of local time")
    p = add("latest", cmd_latest, "the newest value of every series, with its age")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--utc", action="store_true", help="times in UTC instead of local time")
    p = add("hue-pair", cmd_hue_pair, "register with a Hue bridge (press its link button)")
    p.add_argument("--bridge", metavar="HOST", help="host or host:port (default: the config's)")
    p.add_argument("--wait", type=float, default=30.0, help=argparse.SUPPRESS)
    p = add("amazon-login", cmd_amazon_login, "sign in as an Alexa device (or import a token)")
    p.add_argument("--domain", metavar="D", help="marketplace, e.g. amazon.de (default: config)")
    p.add_argument("--refresh-token", metavar="FILE|-", help="import a refresh token instead")
    p.add_argument("--debug-html", metavar="DIR", help="save Amazon's pages (secrets masked)")
    p = add("amazon-cookies", cmd_amazon_cookies, "import Amazon cookies and test them")
    p.add_argument(
        "file", nargs="?", default="-", metavar="FILE|-", help="export file, or - for stdin"
    )
    p = add("simulate", cmd_simulate, "run the Hue bridge and Alexa API simulators on loopback")
    p.add_argument("--hue-port", type=int, default=8081)
    p.add_argument("--aqm-port", type=int, default=8082)
    p.add_argument("--faults", default="", metavar="SCRIPT", help="fault script, see below")
    p.formatter_class, p.epilog = _FaultListHelp, _FaultListHelp.PLACEHOLDER
    p = add("demo", cmd_demo, "the whole daemon against the simulators, with scripted faults")
    p.add_argument("--duration", type=float, default=60.0, metavar="SECONDS")
    p.add_argument(
        "--data-dir", metavar="DIR", help="keep the demo's data here (default: a temp folder)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    harden_process()
    args = build_parser().parse_args(argv)
    if not hasattr(args, "config"):
        args.config = None
    try:
        return args.func(args)
    except ConfigError as exc:
        _print_problems(exc.problems)
        return EX_CONFIG
    except UsageProblem as exc:
        _print_problems([str(exc)])
        return EX_CONFIG
    except UsageError as exc:
        _print_problems([str(exc)])
        return EX_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head/less that closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
