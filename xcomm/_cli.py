"""The `xcomm` command: `xcomm demo` today; each subcommand is one small `_add_*` function.

Run it as `xcomm ...` (installed script) or `python -m xcomm ...`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from xcomm._version import __version__

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _run_demo(args: argparse.Namespace) -> int:
    from xcomm._demo import run

    return run(
        args.maildir,
        burst=args.burst,
        pool_size=args.pool_size,
        campaign=args.campaign,
        subscribers=args.subscribers,
        outbox=args.outbox,
    )


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from xcomm._demo import DEFAULT_BURST, DEFAULT_MAILDIR, DEFAULT_POOL_SIZE, DEFAULT_SUBSCRIBERS

    parser = commands.add_parser(
        "demo",
        help="send email through a local loopback SMTP server (no account needed)",
        description=(
            "Start an SMTP server on 127.0.0.1 that files messages into a Maildir, send a few "
            "messages and a concurrent burst through xcomm's pooled SMTP provider, and print "
            "the results, the Maildir, the metrics and the pool statistics. Then send a "
            "newsletter campaign to generated subscribers through the bulk sender and a SQLite "
            "outbox, and run it again to show that nothing is sent twice."
        ),
    )
    parser.add_argument(
        "--maildir",
        default=DEFAULT_MAILDIR,
        metavar="PATH",
        help=f"where the server stores the messages (default: ./{DEFAULT_MAILDIR})",
    )
    parser.add_argument(
        "--burst",
        type=_positive_int,
        default=DEFAULT_BURST,
        metavar="N",
        help=f"messages in the concurrent burst (default: {DEFAULT_BURST})",
    )
    parser.add_argument(
        "--pool-size",
        type=_positive_int,
        default=DEFAULT_POOL_SIZE,
        metavar="N",
        help=f"SMTP connections in the pool (default: {DEFAULT_POOL_SIZE})",
    )
    parser.add_argument(
        "--no-campaign",
        dest="campaign",
        action="store_false",
        help="skip the newsletter campaign and its resume",
    )
    parser.add_argument(
        "--subscribers",
        type=_positive_int,
        default=DEFAULT_SUBSCRIBERS,
        metavar="N",
        help=f"subscribers the campaign sends to (default: {DEFAULT_SUBSCRIBERS})",
    )
    parser.add_argument(
        "--outbox",
        default=None,
        metavar="PATH",
        help="the campaign's SQLite outbox (default: demo-outbox.sqlite3 next to the Maildir)",
    )
    parser.set_defaults(handler=_run_demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="xcomm", description="xcomm: asyncio-native messaging over email, SMS, chat."
    )
    parser.add_argument("--version", action="version", version=f"xcomm {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log xcomm's provider calls to stderr",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_demo(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `xcomm` command with `argv` (default: `sys.argv[1:]`); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    if args.verbose:
        from xcomm._logging import configure_logging

        configure_logging("INFO")
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
