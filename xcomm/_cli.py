"""The `xcomm` command: `demo`, `send`, `search`, `campaign ...`, `worker`, `auth gmail|outlook`;
one `_add_*` each.

Run it as `xcomm ...` (installed script) or `python -m xcomm ...`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TypeAlias

from xcomm._version import __version__

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def _add_outbox(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--outbox",
        default=None,
        metavar="URL",
        help="the outbox: a SQLite path, sqlite:///abs/path.db or memory:// "
        "(default: [outbox] url of the campaign file, else $XCOMM_OUTBOX, else the user's "
        "data directory)",
    )


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


def _add_demo(commands: Commands) -> None:
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


def _add_provider(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider",
        required=True,
        metavar="NAME",
        help="the [providers.NAME] section of the config file to use",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="the provider config file (default: $XCOMM_CONFIG, else ./xcomm.toml)",
    )


def _run_send(args: argparse.Namespace) -> int:
    from xcomm._email_commands import Outgoing, send

    message = Outgoing(
        to=args.to,
        cc=args.cc,
        bcc=args.bcc,
        subject=args.subject,
        body=args.body,
        body_file=args.body_file,
        html_file=args.html_file,
        attach=args.attach,
        sender=args.sender,
        headers=args.header,
    )
    return send(message, provider=args.provider, config=args.config, as_json=args.json)


def _add_send(commands: Commands) -> None:
    parser = commands.add_parser(
        "send",
        help="send one email through a provider of the config file",
        description=(
            "Build the message, check it (addresses, headers, attachments and their sizes) "
            "and send it through --provider; print the message id and the recipients the "
            "provider accepted. Exit status: 0 sent, 1 the provider failed or refused "
            "recipients, 2 bad input (nothing sent), 130 interrupted."
        ),
    )
    _add_provider(parser)
    for option, what in (("--to", "To"), ("--cc", "Cc"), ("--bcc", "Bcc")):
        parser.add_argument(
            option,
            action="append",
            default=[],
            metavar="ADDRESS",
            help=f"{what} recipients: repeat the option or separate them with commas",
        )
    parser.add_argument("--subject", default="", metavar="TEXT", help="the subject")
    parser.add_argument("--body", default=None, metavar="TEXT", help="the text body (- : stdin)")
    parser.add_argument(
        "--body-file", default=None, metavar="FILE", help="read the text body from FILE (- : stdin)"
    )
    parser.add_argument("--html-file", default=None, metavar="FILE", help="the HTML body")
    parser.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="FILE",
        help="attach FILE (repeat for more)",
    )
    parser.add_argument(
        "--from",
        dest="sender",
        default=None,
        metavar="ADDRESS",
        help="the sender (default: the provider's sender setting)",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a header such as 'X-Campaign: spring' (repeat for more)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run_send)


def _run_search(args: argparse.Namespace) -> int:
    from xcomm._email_commands import search

    return search(
        args.query,
        provider=args.provider,
        config=args.config,
        folder=args.folder,
        limit=args.limit,
        as_json=args.json,
        explain=args.explain,
    )


def _add_search(commands: Commands) -> None:
    parser = commands.add_parser(
        "search",
        help="search a mailbox with a query expression; print a table",
        description=(
            "Search --provider's mailbox for QUERY, a query expression such as "
            "'from:bob@example.com is:unread since:2024-01-01' (see docs/querying.md), and "
            "print the newest matches as a table (date, from, subject, size, attachments). "
            "Exit status: 0 done (even with no match), 1 the provider failed, 2 bad input."
        ),
    )
    _add_provider(parser)
    parser.add_argument("query", metavar="QUERY", nargs="?", default="", help="the expression")
    parser.add_argument("--folder", default=None, metavar="NAME", help="search this folder")
    parser.add_argument(
        "--limit",
        type=_positive_int,
        default=50,
        metavar="N",
        help="show at most N messages, the newest (default: 50)",
    )
    parser.add_argument("--json", action="store_true", help="print the messages as JSON")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print what the server evaluates and what is checked locally; search nothing",
    )
    parser.set_defaults(handler=_run_search)


def _run_campaign_run(args: argparse.Namespace) -> int:
    from xcomm._campaign_commands import campaign_run

    return campaign_run(
        args.file, outbox=args.outbox, campaign_id=args.campaign_id, check=args.check
    )


def _add_campaign_run(campaign: Commands) -> None:
    parser = campaign.add_parser(
        "run",
        help="check a campaign file and its recipients, then send it",
        description=(
            "Read FILE (a campaign.toml: see docs/cli.md), check it, its templates and its "
            "recipients CSV, reporting every problem with its file and line; then send the "
            "campaign through the outbox with a progress bar, and print a summary. Running it "
            "again sends only what was not sent. Exit status: 0 sent, 1 recipients failed, "
            "2 bad input (nothing sent), 130 interrupted."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="the campaign file (TOML)")
    _add_outbox(parser)
    parser.add_argument(
        "--campaign-id",
        default=None,
        metavar="ID",
        help="the campaign id (default: [campaign] id, else the file name and a hash of its path)",
    )
    parser.add_argument(
        "--check", action="store_true", help="check the file and its recipients; send nothing"
    )
    parser.set_defaults(handler=_run_campaign_run)


def _run_campaign_status(args: argparse.Namespace) -> int:
    from xcomm._campaign_commands import campaign_status

    return campaign_status(args.campaign_id, outbox=args.outbox)


def _add_campaign_status(campaign: Commands) -> None:
    parser = campaign.add_parser(
        "status",
        help="count a campaign's recipients per status",
        description=(
            "Print the campaign's definition and how many of its recipients are pending, "
            "sending, sent, failed, in doubt or suppressed. Exit status 3: no such campaign."
        ),
    )
    parser.add_argument("campaign_id", metavar="ID", help="the campaign id")
    _add_outbox(parser)
    parser.set_defaults(handler=_run_campaign_status)


def _run_campaign_resume(args: argparse.Namespace) -> int:
    from xcomm._campaign_commands import campaign_resume

    return campaign_resume(args.campaign_id, outbox=args.outbox)


def _add_campaign_resume(campaign: Commands) -> None:
    parser = campaign.add_parser(
        "resume",
        help="send what an interrupted campaign left pending",
        description=(
            "Send the campaign's pending messages, with the templates and provider stored in "
            "the outbox (the password comes from the environment variable it was named by). "
            "Exit status: 0 sent, 1 recipients failed, 3 no such campaign, 130 interrupted."
        ),
    )
    parser.add_argument("campaign_id", metavar="ID", help="the campaign id")
    _add_outbox(parser)
    parser.set_defaults(handler=_run_campaign_resume)


def _add_campaign(commands: Commands) -> None:
    parser = commands.add_parser(
        "campaign",
        help="send a campaign from a campaign file; inspect and resume campaigns",
        description="Send bulk email campaigns described by a TOML file (see docs/cli.md).",
    )
    campaign = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_campaign_run(campaign)
    _add_campaign_status(campaign)
    _add_campaign_resume(campaign)

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(handler=usage)


def _run_worker(args: argparse.Namespace) -> int:
    from xcomm._campaign_commands import worker

    return worker(
        processes=args.processes,
        campaign_id=args.campaign,
        until_idle=args.until_idle,
        poll_interval=args.poll_interval,
        outbox=args.outbox,
        rate_share=args.rate_share,
    )


def _add_worker(commands: Commands) -> None:
    parser = commands.add_parser(
        "worker",
        help="send due messages of scheduled and interrupted campaigns",
        description=(
            "Send every campaign's messages as they become due (scheduled campaigns, drip "
            "steps, resumed campaigns), until stopped with Ctrl-C or SIGTERM. Several "
            "processes share one SQLite outbox without sending a message twice."
        ),
    )
    parser.add_argument(
        "--processes",
        type=_positive_int,
        default=1,
        metavar="N",
        help="worker processes: this one and N-1 children (default: 1)",
    )
    parser.add_argument(
        "--campaign", default=None, metavar="ID", help="send only this campaign's messages"
    )
    parser.add_argument(
        "--until-idle",
        action="store_true",
        help="exit when nothing is due now (instead of waiting; later messages stay queued)",
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="how often to look for due messages when idle (default: 1)",
    )
    _add_outbox(parser)
    # How the parent tells its children their part of each campaign's rate (1/N).
    parser.add_argument("--rate-share", type=_positive_float, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(handler=_run_worker)


def _run_auth(args: argparse.Namespace) -> int:
    from xcomm.auth._commands import auth_gmail, auth_outlook

    options = {
        "token_file": args.token_file,
        "scopes": args.scopes,
        "open_browser": args.browser,
        "port": args.port,
        "timeout": args.timeout,
    }
    if args.service == "gmail":
        return auth_gmail(args.client_secrets, **options)
    return auth_outlook(args.client_id, tenant=args.tenant, **options)


def _add_auth(commands: Commands) -> None:
    parser = commands.add_parser(
        "auth",
        help="sign in to Gmail or Outlook in a browser and save a refresh token",
        description=(
            "Open the provider's sign-in page, catch the redirect on 127.0.0.1 (PKCE), and "
            "save an authorized-user token file (mode 0600). See docs/auth.md for creating "
            "the OAuth client. Exit status: 0 saved, 1 refused or timed out, 2 bad settings."
        ),
    )
    services = parser.add_subparsers(title="services", metavar="SERVICE", dest="service")
    gmail = services.add_parser("gmail", help="Google: needs the OAuth client file")
    gmail.add_argument(
        "--client-secrets",
        required=True,
        metavar="FILE",
        help="the OAuth client JSON ('Desktop app') from the Google Cloud console",
    )
    outlook = services.add_parser("outlook", help="Microsoft 365 / Outlook.com via Entra")
    outlook.add_argument("--client-id", required=True, metavar="ID", help="the app's client id")
    outlook.add_argument(
        "--tenant",
        default="common",
        metavar="TENANT",
        help="tenant id or domain, or common/organizations/consumers (default: common)",
    )
    for sub, default in ((gmail, "gmail-token.json"), (outlook, "outlook-token.json")):
        sub.add_argument(
            "--token-file",
            default=default,
            metavar="PATH",
            help=f"where to save the token (default: {default})",
        )
        sub.add_argument("--scopes", nargs="+", default=None, metavar="SCOPE", help="scopes")
        sub.add_argument(
            "--no-browser",
            dest="browser",
            action="store_false",
            help="only print the URL (to open it on another machine, forward the port)",
        )
        sub.add_argument("--port", type=int, default=0, help="local port (default: any free)")
        sub.add_argument(
            "--timeout",
            type=_positive_float,
            default=300.0,
            metavar="SECONDS",
            help="how long to wait for the sign-in (default: 300)",
        )
        sub.set_defaults(handler=_run_auth)

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(handler=usage)


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
    _add_send(commands)
    _add_search(commands)
    _add_campaign(commands)
    _add_worker(commands)
    _add_auth(commands)
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
