"""The newsletter part of `xcomm demo`: a campaign through the bulk sender and the outbox.

After the demo's other sends, `run_campaign` generates a CSV of subscribers (seeded, so every
run writes the same file), renders the newsletter templates of `docs/examples/newsletter/` per
subscriber with a signed one-click unsubscribe link, and sends it through
`comm.create_bulk_sender()` and the SQLite outbox to the loopback server, with a progress bar.
It prints the `CampaignResult`, checks the Maildir, then runs the same campaign again: the
outbox knows every recipient was sent, so the second run sends nothing.

Each demo run uses a fresh campaign id, so an outbox left by an earlier run is kept (and shows
that runs of different campaigns do not interfere) rather than deleted.
"""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import importlib.util
import random
import secrets
import time
import unicodedata
from collections.abc import Iterator
from email.message import EmailMessage as MIMEMessage
from pathlib import Path

import xcomm
from xcomm._console import ProgressBar, campaign_report, shown, table
from xcomm._demo import LoopbackSMTPServer, _Printer
from xcomm._errors import OutboxError
from xcomm._manager import CommManager
from xcomm._templates import Template, UnsubscribeSigner
from xcomm.bulk import CampaignResult

__all__ = [
    "CAMPAIGN_CONCURRENCY",
    "CAMPAIGN_POOL_SIZE",
    "load_template",
    "run_campaign",
    "subscribers",
    "template_dir",
    "write_subscribers",
]

CAMPAIGN_CONCURRENCY = 32
CAMPAIGN_POOL_SIZE = 8
CAMPAIGN_SENDER = "xcomm newsletter <news@example.com>"
SUBSCRIBERS_CSV = "demo-subscribers.csv"
SEED = 2026
# A demo secret, public on purpose: a real one comes from secrets.token_bytes(32), kept secret.
UNSUBSCRIBE_SECRET = b"xcomm-demo-unsubscribe-secret"
UNSUBSCRIBE_URL = "https://example.com/unsubscribe"
TEMPLATE_FILES = ("subject.txt", "body.txt", "body.html")

FIRST_NAMES = (
    "Ada", "Alan", "Amara", "Ana", "Björn", "Chen", "Chloé", "Dmitri", "Elif", "Emma",
    "Fatima", "François", "Grace", "Hiro", "Ines", "Jürgen", "José", "Kwame", "Lars", "Leila",
    "Linus", "Margaret", "Mei", "Noor", "Olu", "Ólafur", "Priya", "Renée", "Sofia", "Tariq",
    "Yuki", "Zoë",
)  # fmt: skip
LAST_NAMES = (
    "Adeyemi", "Bauer", "Castro", "Dubois", "Eriksson", "Fischer", "García", "Hopper", "Ivanova",
    "Jansen", "Kowalski", "Lovelace", "Müller", "Nakamura", "Okafor", "Papadopoulos", "Quispe",
    "Rossi", "Santos", "Torvalds", "Turing", "Yilmaz", "Zhang",
)  # fmt: skip
CITIES = (
    "Berlin", "Buenos Aires", "Dublin", "Köln", "Kraków", "Lagos", "Lisboa", "Melbourne",
    "Montréal", "Mumbai", "Nairobi", "Osaka", "Reykjavík", "São Paulo", "Seoul", "Toronto",
    "Zürich", "東京",
)  # fmt: skip
PLANS = ("free", "pro", "team")
PLAN_WEIGHTS = (6, 3, 1)
DOMAINS = ("example.com", "example.org", "example.net")

# The templates of docs/examples/newsletter/, for an installed wheel that has no docs/ next
# to it; tests/integration/test_demo.py keeps the two copies identical.
BUILTIN_SUBJECT = "{{ first_name }}, this month's xcomm news for {{ city }}\n"
BUILTIN_TEXT = """\
Hi {{ first_name }},

here is what is new in xcomm this month:

  * Campaigns: stream a CSV of any size through a bounded pool of workers.
  * A durable SQLite outbox: run a campaign again and it sends only what is missing.
  * Signed one-click unsubscribe links (RFC 8058) in every message.

{% if plan == "pro" %}As a Pro subscriber you get priority support: just reply to this message.
{% elif plan == "team" %}Your Team plan now shares templates with everyone in your workspace.
{% else %}You are on the Free plan; see https://example.com/pricing for what Pro adds.
{% endif %}
See you around {{ city }}!
-- The xcomm team

You get this newsletter because {{ email }} subscribed to it.
Unsubscribe with one click: {{ unsubscribe_url }}
"""
BUILTIN_HTML = """\
<!doctype html>
<html>
<body style="font-family: sans-serif; max-width: 36em">
<p>Hi {{ first_name }},</p>
<p>here is what is new in xcomm this month:</p>
<ul>
  <li><b>Campaigns</b>: stream a CSV of any size through a bounded pool of workers.</li>
  <li><b>A durable SQLite outbox</b>: run a campaign again and it sends only what is missing.</li>
  <li><b>Signed one-click unsubscribe links</b> (RFC 8058) in every message.</li>
</ul>
{% if plan == "pro" %}
<p>As a <b>Pro</b> subscriber you get priority support: just reply to this message.</p>
{% elif plan == "team" %}
<p>Your <b>Team</b> plan now shares templates with everyone in your workspace.</p>
{% else %}
<p>You are on the Free plan; see <a href="https://example.com/pricing">what Pro adds</a>.</p>
{% endif %}
<p>See you around {{ city }}!<br>— The xcomm team</p>
<p style="color: #777; font-size: small">You get this newsletter because {{ email }} subscribed
to it. <a href="{{ unsubscribe_url }}">Unsubscribe with one click</a>.</p>
</body>
</html>
"""


# -- inputs --------------------------------------------------------------------------------


def _ascii(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return decomposed.encode("ascii", "ignore").decode().lower()


def subscribers(count: int, *, seed: int = SEED) -> Iterator[dict[str, str]]:
    """`count` made-up subscribers (email, first_name, city, plan); the same for a seed."""
    rng = random.Random(seed)
    for n in range(1, count + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        yield {
            "email": f"{_ascii(first)}.{_ascii(last)}.{n:04d}@{rng.choice(DOMAINS)}",
            "first_name": first,
            "city": rng.choice(CITIES),
            "plan": rng.choices(PLANS, PLAN_WEIGHTS)[0],
        }


def write_subscribers(path: Path, count: int, *, seed: int = SEED) -> Path:
    """Write `subscribers(count, seed=seed)` to the CSV file `path` (UTF-8, with a header)."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(
            file, fieldnames=("email", "first_name", "city", "plan"), lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(subscribers(count, seed=seed))
    return path


def template_dir() -> Path | None:
    """`docs/examples/newsletter/` of the source tree xcomm runs from, if it is there."""
    folder = Path(xcomm.__file__).resolve().parents[1] / "docs" / "examples" / "newsletter"
    return folder if all((folder / name).is_file() for name in TEMPLATE_FILES) else None


def load_template() -> tuple[Template, str]:
    """The newsletter `Template` and where it came from (the example files, or built in)."""
    folder = template_dir()
    if folder is None:
        template = Template(
            subject=BUILTIN_SUBJECT.strip(), text=BUILTIN_TEXT, html=BUILTIN_HTML, name="body"
        )
        return template, "built in (docs/examples/newsletter/ is not next to this install)"
    subject, text, html = (folder / name for name in TEMPLATE_FILES)
    return Template.from_files(subject=subject, text=text, html=html), f"{shown(folder)}/"


# -- the campaign --------------------------------------------------------------------------


def _print_report(say: _Printer, result: CampaignResult) -> None:
    say.heading(f"Campaign report (CampaignResult of {result.campaign_id!r})")
    say(*campaign_report(result))


def _parse(server: LoopbackSMTPServer, key: str) -> MIMEMessage:
    parsed = email.message_from_bytes(server.maildir.get_bytes(key), policy=email.policy.default)
    assert isinstance(parsed, MIMEMessage)
    return parsed


def _print_delivered(say: _Printer, server: LoopbackSMTPServer, new_keys: list[str]) -> None:
    say(
        "",
        f"  Maildir {server.maildir_path}: {len(new_keys):,} campaign messages arrived "
        f"({len(server.maildir):,} in total); three of them:",
    )
    rows = [["to", "subject", "List-Unsubscribe", "one-click"]]
    for key in new_keys[:3]:
        message = _parse(server, key)
        url = str(message.get("list-unsubscribe", "-"))
        one_click = message.get("list-unsubscribe-post") == "List-Unsubscribe=One-Click"
        rows.append(
            [
                str(message["to"]),
                str(message["subject"]),
                url if len(url) <= 48 else url[:47] + "…",
                "yes" if one_click else "no",
            ]
        )
    say(*table(rows))


async def run_campaign(
    comm: CommManager,
    server: LoopbackSMTPServer,
    say: _Printer,
    *,
    subscribers: int,
    outbox: Path,
) -> int:
    """Send the newsletter to `subscribers` generated subscribers, then resume it; exit code."""
    say.heading(f"Newsletter campaign: {subscribers:,} subscribers through the bulk sender")
    if importlib.util.find_spec("jinja2") is None:
        say("  skipped: campaign templates need Jinja2: pip install 'xcomm[templates]'")
        return 0
    try:
        await comm.outbox()
    except (OutboxError, OSError) as exc:
        say.error(f"cannot use {outbox} as the campaign outbox: {exc}")
        return 1
    csv_path = await asyncio.to_thread(
        write_subscribers, server.maildir_path.parent / SUBSCRIBERS_CSV, subscribers
    )
    template, source = load_template()
    signer = UnsubscribeSigner(UNSUBSCRIBE_SECRET, UNSUBSCRIBE_URL)
    smtp = comm.smtp(server.host, server.port, sender=CAMPAIGN_SENDER, pool_size=CAMPAIGN_POOL_SIZE)
    bulk = comm.create_bulk_sender(smtp, max_concurrent=CAMPAIGN_CONCURRENCY)
    # A fresh id per demo run: the outbox remembers earlier runs, and reusing their id would
    # (rightly) send nothing.
    campaign_id = f"newsletter-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    say(
        f"  recipients  {shown(csv_path)} (generated, seed {SEED})",
        f"  templates   {source} (subject.txt, body.txt, body.html)",
        f"  outbox      {shown(outbox)} (SQLite), campaign_id={campaign_id!r}",
        f"  sending     {CAMPAIGN_CONCURRENCY} in flight, a pool of {CAMPAIGN_POOL_SIZE} SMTP "
        f"connections, signed List-Unsubscribe (one-click) per recipient",
        "",
    )

    before = set(server.maildir.keys())
    bar = ProgressBar(subscribers, say.stream)
    first = await bulk.send_campaign(
        template=template,
        recipients=csv_path,
        campaign_id=campaign_id,
        unsubscribe=signer,
        on_progress=bar,
    )
    bar.finish(first)
    _print_report(say, first)
    arrived = sorted(set(server.maildir.keys()) - before)
    _print_delivered(say, server, arrived)

    say.heading(f"Resume: the same campaign again (campaign_id={campaign_id!r})")
    before = set(server.maildir.keys())
    again = await bulk.send_campaign(
        template=template, recipients=csv_path, campaign_id=campaign_id, unsubscribe=signer
    )
    repeated = len(set(server.maildir.keys()) - before)
    verdict = "nothing is sent twice" if again.sent == repeated == 0 else "SENT AGAIN"
    say(
        f"  resume: {again.sent:,} sent / {again.skipped:,} skipped in {again.duration:.2f} s: "
        f"{verdict} ({repeated} new in the Maildir)"
    )
    ok = (
        first.ok
        and first.sent == subscribers
        and len(arrived) == subscribers
        and again.sent == repeated == 0
        and again.skipped == subscribers
    )
    return 0 if ok else 1
