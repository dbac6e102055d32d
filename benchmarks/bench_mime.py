"""MIME rendering: xcomm's `render_message` against the stdlib `email` package, side by side.

Run with `python -m benchmarks.bench_mime`. Each case builds the same message both ways:
xcomm from an `EmailMessage` struct, the stdlib with `email.message.EmailMessage`
(`set_content` + `add_alternative` + `add_attachment`) and `as_bytes(policy=SMTP)`.
Both sides are warmed up, then timed in `REPEATS` interleaved rounds of `NUMBER` messages (so
machine noise hits both alike); the figure is the median microseconds per message. One JSON
line per result, then a short table.
"""

from __future__ import annotations

import email.message
import email.policy
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from benchmarks._report import metadata
from xcomm._models import Address, Attachment, EmailMessage
from xcomm.email._mime import format_date, render_message

REPEATS = 7
NUMBER = 100
WARMUP = 20
DATE = datetime(2025, 1, 7, 9, 30, tzinfo=UTC)
TEXT_1K = ("The quick brown fox jumps over the lazy dog. " * 22 + "\n") * 1
HTML = "<html><body><p>" + "Hello <b>world</b>. " * 50 + "</p></body></html>"
PDF = bytes(range(256)) * 400  # 100 KiB


class Case:
    """One message shape, built by xcomm and by the stdlib."""

    def __init__(
        self,
        name: str,
        *,
        sender: Address,
        to: Address,
        subject: str,
        text: str,
        html: str | None = None,
        attachment: bytes | None = None,
    ) -> None:
        self.name = name
        self.sender, self.to, self.subject = sender, to, subject
        self.text, self.html, self.attachment = text, html, attachment

    def xcomm(self) -> bytes:
        attachments = ()
        if self.attachment is not None:
            attachments = (
                Attachment(
                    filename="report.pdf", content_type="application/pdf", content=self.attachment
                ),
            )
        message = EmailMessage(
            sender=self.sender,
            to=(self.to,),
            subject=self.subject,
            text=self.text,
            html=self.html,
            attachments=attachments,
            message_id="<bench@example.com>",
            date=DATE,
        )
        return render_message(message)

    def stdlib(self) -> bytes:
        msg = email.message.EmailMessage()
        msg["From"] = str(self.sender)
        msg["To"] = str(self.to)
        msg["Subject"] = self.subject
        msg["Date"] = format_date(DATE)
        msg["Message-ID"] = "<bench@example.com>"
        msg.set_content(self.text)
        if self.html is not None:
            msg.add_alternative(self.html, subtype="html")
        if self.attachment is not None:
            msg.add_attachment(
                self.attachment, maintype="application", subtype="pdf", filename="report.pdf"
            )
        return msg.as_bytes(policy=email.policy.SMTP)


CASES = [
    Case(
        "plain_1k",
        sender=Address(email="ada@example.com", name="Ada Lovelace"),
        to=Address(email="bob@example.org", name="Bob"),
        subject="Quarterly numbers",
        text=TEXT_1K,
    ),
    Case(
        "html_attach_100k",
        sender=Address(email="ada@example.com", name="Ada Lovelace"),
        to=Address(email="bob@example.org", name="Bob"),
        subject="Report attached",
        text=TEXT_1K,
        html=HTML,
        attachment=PDF,
    ),
    Case(
        "utf8_headers",
        sender=Address(email="joerg@example.com", name="Jörg Müller"),
        to=Address(email="zoe@example.org", name="Zoë Ñúñez 🎉"),
        subject="Grüße aus Köln — café, naïve façade, 東京 and 🎉 in one subject line",
        text="Schöne Grüße!\n" * 20,
    ),
]


def _round(fn: Callable[[], bytes]) -> float:
    start = time.perf_counter()
    for _ in range(NUMBER):
        fn()
    return (time.perf_counter() - start) / NUMBER * 1e6


def _compare(case: Case) -> tuple[float, float]:
    """Median µs per message for xcomm and the stdlib, their rounds interleaved."""
    assert case.xcomm() and case.stdlib()
    for _ in range(WARMUP):
        case.xcomm()
        case.stdlib()
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(REPEATS):
        ours.append(_round(case.xcomm))
        theirs.append(_round(case.stdlib))
    return statistics.median(ours), statistics.median(theirs)


def main() -> None:
    rows = []
    for case in CASES:
        ours, theirs = _compare(case)
        for impl, us, size in (
            ("xcomm", ours, len(case.xcomm())),
            ("stdlib", theirs, len(case.stdlib())),
        ):
            result = {
                **metadata("mime"),
                "case": case.name,
                "impl": impl,
                "median_us": round(us, 1),
                "bytes": size,
                "repeats": REPEATS,
                "number": NUMBER,
            }
            if impl == "xcomm":
                result["speedup_vs_stdlib"] = round(theirs / ours, 1)
            print(json.dumps(result))
        rows.append((case.name, ours, theirs))
    print()
    print(f"{'case':<18} {'xcomm µs':>10} {'stdlib µs':>10} {'speed-up':>9}")
    for name, ours, theirs in rows:
        print(f"{name:<18} {ours:>10.1f} {theirs:>10.1f} {theirs / ours:>8.1f}x")


if __name__ == "__main__":
    main()
