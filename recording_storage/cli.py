"""The ``recording-storage`` console script.

Each subcommand loads and validates the configuration first, so a bad setting stops every
command the same way: a list of key paths, bad values and what is allowed, exit status 2.
Heavy modules are imported inside the subcommands to keep ``--help`` fast.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .completion import command_parsers
from .config import AppConfig, config_file_used, load_config
from .errors import ConfigError, ExitCode, RecordingStorageError, StartupError

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = ExitCode.OK, ExitCode.FAILED, ExitCode.CONFIG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recording-storage",
        description="Move recordings from S3 into DRACOON, encrypted client-side.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    config_help = "configuration file (default: $RECORDING_STORAGE_CONFIG or conf/app.yaml)"
    parser.add_argument("-c", "--config", type=Path, default=None, help=config_help)
    # Also accepted after the subcommand (``recording-storage check -c file``), where people put it.
    with_config = argparse.ArgumentParser(add_help=False)
    with_config.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[with_config],
                         help="run the service (workers, sharer, health server)")
    run.add_argument("--drain", action="store_true", help="exit once the queue is empty")
    run.add_argument("--max-messages", type=_positive, default=None, help="exit after this many messages")

    check = sub.add_parser("check", parents=[with_config],
                           help="validate the configuration and prove every dependency works")
    check.add_argument(
        "--write-probe",
        action="store_true",
        help="also upload a tiny encrypted file per instance, read it back and delete it",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object per check (for automation)")

    send = sub.add_parser("send-job", parents=[with_config],
                          help="publish a job message (JSON) to the configured queue")
    send.add_argument("file", help="JSON file with the job message, or - for standard input")
    send.add_argument("--no-validate", action="store_true", help="send even if the message does not parse")
    send.add_argument("--dry-run", action="store_true",
                      help="do not send; print what the job would do (the same as plan)")

    plan = sub.add_parser(
        "plan", parents=[with_config],
        help="show what a job would do (rooms, names, expirations) without doing it")
    plan.add_argument("file", help="JSON file with the job message (or S3 event), or - for standard input")

    dlq = sub.add_parser("dlq", parents=[with_config], help="list dead-lettered jobs, or send them back",
                         description="Inspect the dead-letter queue (queue.dlq_name) and redrive it.")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dlq_list = dlq_sub.add_parser(
        "list", parents=[with_config],
        help="one entry per dead letter: id, reason, error, age, instance, keys")
    dlq_list.add_argument("--reason", default=None, metavar="CODE", help="only this reason code")
    dlq_list.add_argument("--limit", type=_positive, default=1000, help="look at most at N messages (1000)")
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per dead letter")
    redrive = dlq_sub.add_parser(
        "redrive", parents=[with_config], help="send dead letters back to the job queue (body unchanged)")
    redrive.add_argument("--reason", default=None, metavar="CODE", help="only this reason code")
    redrive.add_argument("--limit", type=_positive, default=None, help="at most N messages")

    config_cmd = sub.add_parser("config", parents=[with_config], help="show the effective configuration")
    config_sub = config_cmd.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_sub.add_parser(
        "show", parents=[with_config],
        help="every setting after file and environment, secrets masked, with its source")
    show.add_argument("--json", action="store_true", help="one JSON object (key, value, source) per setting")

    share = sub.add_parser("share", parents=[with_config], help="serve missing file keys once and exit")
    share.add_argument("--instance", default=None, help="only this instance domain")

    stack = sub.add_parser(
        "local-stack", help="start the embedded local stack (moto S3/SQS + DRACOON emulator)"
    )
    stack.add_argument(
        "--dir",
        type=Path,
        default=Path(".local-stack"),
        help="where to write the generated configuration (default: .local-stack)",
    )

    sub.add_parser("demo", help="start the local stack and move one recording end to end")

    completion = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    completion.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")

    keypair = sub.add_parser(
        "keypair", help="generate a DRACOON user key pair (JSON) for tests and emulators"
    )
    keypair.add_argument("--version", dest="kp_version", choices=["A", "RSA-4096"], default="RSA-4096",
                         help="key pair version (default: RSA-4096; A is the legacy RSA-2048)")
    keypair.add_argument(
        "--password-env",
        default="DRACOON_ENCRYPTION_PASSWORD",
        help="environment variable holding the encryption password",
    )
    _add_footers(parser)
    return parser


# Every subcommand's --help ends with an example and its exit statuses (docs/operations.md has
# the full table). Keyed by the command path as typed.
_FOOTERS: dict[str, tuple[str, str]] = {
    "run": ("recording-storage -c conf/app.yaml run --drain",
            "0 stopped by a signal, or a bounded run (--drain/--max-messages) with every job done; "
            "3 cannot start; 4 bounded run, some jobs dead-lettered; 5 bounded run, some jobs left "
            "for retry; 130 interrupted (bounded run stopped, or a second Ctrl-C); 2 invalid configuration"),
    "check": ("recording-storage check --write-probe",
              "0 every check passed (warnings allowed); 1 a check failed; 2 invalid configuration"),
    "send-job": ("recording-storage send-job job.json",
                 "0 sent (message id printed); 1 invalid job or SQS failed; 2 invalid configuration"),
    "plan": ("recording-storage plan job.json",
             "0 the job would run; 1 it would be dead-lettered (reason printed) or a dependency "
             "failed; 2 invalid configuration"),
    "dlq": ("recording-storage dlq list", "0 done; 1 SQS failed; 2 invalid configuration"),
    "dlq list": ("recording-storage dlq list --reason source_missing",
                 "0 listed (also when empty); 1 SQS failed; 2 invalid configuration"),
    "dlq redrive": ("recording-storage dlq redrive --reason access_denied --limit 10",
                    "0 done (also when nothing matched); 1 SQS failed; 2 invalid configuration"),
    "config": ("recording-storage config show", "0 shown; 2 invalid configuration"),
    "config show": ("recording-storage -c conf/app.yaml config show | grep queue.",
                    "0 shown; 2 invalid configuration"),
    "share": ("recording-storage share --instance meet.example.com",
              "0 every instance served; 1 an instance failed; 2 invalid configuration"),
    "local-stack": ("recording-storage local-stack --dir /tmp/rs-stack",
                    "0 stopped with Ctrl-C; 3 the directory is held by a running stack"),
    "demo": ("make demo", "0 DEMO PASSED; 1 DEMO FAILED"),
    "keypair": ("DRACOON_ENCRYPTION_PASSWORD=... recording-storage keypair --version A",
                "0 printed; 2 no password in the environment variable"),
    "completion": ("source <(recording-storage completion bash)", "0 printed"),
}


def _add_footers(parser: argparse.ArgumentParser) -> None:
    for path, child in command_parsers(parser).items():
        if not path:
            continue
        example, statuses = _FOOTERS[path]
        child.epilog = f"example:\n  {example}\n\nexit status: {statuses}"
        child.formatter_class = argparse.RawDescriptionHelpFormatter


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _load(args: argparse.Namespace) -> AppConfig:
    return load_config(args.config)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"recording-storage: {exc}", file=sys.stderr)
        print("Fix the problems above and run again (conf/app.yaml documents every setting, "
              "docs/configuration.md the instances file).", file=sys.stderr)
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"recording-storage: {exc}", file=sys.stderr)
        return ExitCode.CANNOT_START
    except RecordingStorageError as exc:
        print(f"recording-storage: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # `recording-storage config show | head`: the reader has all it wanted.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        # A file or socket the user named: one line, not a traceback.
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"recording-storage: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILED


def _without_service_config(args: argparse.Namespace) -> int | None:
    """Commands that do not run with the loaded service configuration; None for the others."""
    command: str = args.command
    if command == "keypair":
        return _keypair(args)
    if command == "completion":
        from .completion import completion_script

        print(completion_script(_parser(), args.shell), end="")
        return EXIT_OK
    if command in ("local-stack", "demo"):
        from . import localstack

        if command == "demo":
            return asyncio.run(localstack.demo(Path(".local-stack/demo").resolve()))
        return asyncio.run(localstack.serve_local_stack(args.dir.resolve()))
    if command == "config":
        from .config.show import effective_settings, render_settings

        file, settings = effective_settings(args.config)
        print(render_settings(file, settings, as_json=args.json))
        return EXIT_OK
    return None


def _dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    done = _without_service_config(args)
    if done is not None:
        return done
    config = _load(args)
    from .logs import configure_logging

    log_cfg = config.log
    if command in ("check", "send-job", "dlq", "plan") and log_cfg.level == "info":
        # Their own output is the report; progress lines between its lines only hide it.
        log_cfg = log_cfg.model_copy(update={"level": "warning"})
    if command == "check" and log_cfg.level == "warning":
        # Retry warnings repeat what the report's FAIL lines already say.
        log_cfg = log_cfg.model_copy(update={"level": "error"})
    configure_logging(log_cfg)
    if command == "run":
        from .service import run

        return asyncio.run(run(config, drain=args.drain, max_messages=args.max_messages))
    if command == "check":
        from .checks import run_checks

        return asyncio.run(run_checks(config, write_probe=args.write_probe, as_json=args.json,
                                      config_file=config_file_used(args.config)))
    if command == "plan" or (command == "send-job" and args.dry_run):
        from .plan import plan_message

        body = sys.stdin.read() if args.file == "-" else _read_job_file(Path(args.file))
        return asyncio.run(plan_message(config, body, sys.stdout))
    if command == "send-job":
        body = sys.stdin.read() if args.file == "-" else _read_job_file(Path(args.file))
        return asyncio.run(_send_job(config, body, validate=not args.no_validate))
    if command == "dlq":
        from . import dlq

        if args.dlq_command == "list":
            asyncio.run(dlq.list_dead_letters(config, sys.stdout, reason=args.reason, limit=args.limit,
                                              as_json=args.json))
        else:
            asyncio.run(dlq.redrive_dead_letters(config, sys.stdout, reason=args.reason, limit=args.limit))
        return EXIT_OK
    if command == "share":
        from .service import share_once

        return asyncio.run(share_once(config, only=args.instance))
    raise AssertionError(command)


def _read_job_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecordingStorageError(f"cannot read job file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RecordingStorageError(f"cannot read job file {path}: not UTF-8 text (a job is JSON)") from None


async def _send_job(config: AppConfig, body: str, *, validate: bool) -> int:
    from .jobs import parse_job_message
    from .sqs import JobQueue

    if validate:
        parse_job_message(body)
    async with JobQueue(config.aws, config.queue, base_dir=config.base_dir) as queue:
        message_id = await queue.send(body)
    print(message_id)
    return EXIT_OK


def _keypair(args: argparse.Namespace) -> int:
    import json

    from .crypto import KeyPairVersion, generate_key_pair

    password = os.environ.get(args.password_env)
    if not password:
        print(f"recording-storage: set the encryption password in ${args.password_env}", file=sys.stderr)
        return EXIT_CONFIG
    pair = generate_key_pair(KeyPairVersion(args.kp_version), password)
    print(json.dumps(pair.to_json(), indent=2))
    return EXIT_OK
