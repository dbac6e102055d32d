"""Attachment file names from senders: made safe, kept distinct, written only inside the
target folder (never through a symbolic link, never over a file unless asked)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from xcomm import FileAlreadyExists, ValidationError
from xcomm.email._imap_actions import check_labels, copyuid
from xcomm.email._reply import forward_subject, html_to_text, quote, reply_subject
from xcomm.email._safe_names import (
    MAX_NAME_BYTES,
    check_free,
    destination,
    inside,
    safe_filename,
    target_directory,
    unique_names,
    write_file,
)

DEVICES = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(10)),
    *(f"LPT{i}" for i in range(10)),
}


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\evil.exe", "evil.exe"),
        ("C:evil.exe", "C_evil.exe"),
        ("a/b.txt", "b.txt"),
        ("dir/", "dir"),
        ("CON.txt", "_CON.txt"),
        ("con", "_con"),
        ("COM1.tar.gz", "_COM1.tar.gz"),
        ("LPT9 .txt", "_LPT9.txt"),
        ("CONSOLE.txt", "CONSOLE.txt"),
        ("report.pdf:hidden", "report.pdf_hidden"),
        ('what?<now>|"*".txt', "what__now_____.txt"),
        (".bashrc", "bashrc"),
        ("evil.exe. . ", "evil.exe"),
        ("evil\u202etxt.exe", "eviltxt.exe"),  # the right-to-left override is gone
        ("a\x00b\r\n.txt", "ab.txt"),
        ("\ud800x.txt", "x.txt"),
        ("Cafe\u0301.txt", "Café.txt"),  # NFC
        ("résumé final.docx", "résumé final.docx"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


@pytest.mark.parametrize("name", [None, "", "..", "../..", "/", "\\\\", " . ", "\u202e"])
def test_nothing_left_gives_a_numbered_name_with_the_types_extension(name: str | None) -> None:
    assert safe_filename(name, index=3, content_type="application/pdf") == "attachment-3.pdf"
    assert safe_filename(name, index=1) == "attachment-1.bin"


def test_long_names_are_cut_to_255_bytes_keeping_the_extension() -> None:
    assert safe_filename("x" * 300 + ".pdf") == "x" * 251 + ".pdf"
    cut = safe_filename("é" * 300 + ".pdf")
    assert cut.endswith("é.pdf") and len(cut.encode()) <= MAX_NAME_BYTES
    assert len(safe_filename("y" * 400).encode()) == MAX_NAME_BYTES


def test_repeats_are_numbered_and_case_only_differences_count() -> None:
    assert unique_names(["a.pdf", "A.PDF", "a.pdf", "b", "b"]) == [
        "a.pdf",
        "A (1).PDF",
        "a (2).pdf",
        "b",
        "b (1)",
    ]
    long = safe_filename("z" * 300 + ".txt")
    numbered = unique_names([long, long])[1]
    assert numbered.endswith(" (1).txt") and len(numbered.encode()) <= MAX_NAME_BYTES


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.none(), st.text(), st.text(alphabet="./\\:CONPRUXL1 .é\x00\u202e")))
def test_any_name_becomes_one_safe_entry_of_the_folder(name: str | None) -> None:
    safe = safe_filename(name, index=7, content_type="text/plain")
    assert safe and len(safe.encode("utf-8")) <= MAX_NAME_BYTES
    assert not set(safe) & set('/\\:<>"|?*\x00')
    assert not any(unicodedata.category(c) in {"Cc", "Cf", "Cs"} for c in safe)
    assert not safe.startswith((".", " ")) and not safe.endswith((".", " "))
    assert safe.split(".")[0].rstrip(" ").upper() not in DEVICES
    folder = Path("/srv/downloads")
    assert (folder / safe).parent == folder
    assert os.path.normpath(folder / safe) == str(folder / safe)
    assert inside(folder, safe) == folder / safe


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=6))
def test_hostile_names_are_written_inside_the_folder(
    tmp_path_factory: pytest.TempPathFactory, names: list[str]
) -> None:
    root = tmp_path_factory.mktemp("dl")
    folder = target_directory(root / "in")
    chosen = unique_names([safe_filename(n, index=i) for i, n in enumerate(names, 1)])
    paths = [write_file(folder, name, b"x") for name in chosen]
    assert all(p.parent == folder for p in paths)
    assert sorted(os.listdir(root)) == ["in"]  # nothing outside
    assert len(os.listdir(folder)) == len(names)


def test_existing_files_are_never_replaced_unless_asked(tmp_path: Path) -> None:
    folder = target_directory(tmp_path)
    write_file(folder, "a.txt", b"first")
    with pytest.raises(FileAlreadyExists, match=r"a.txt exists in .*overwrite=True") as caught:
        write_file(folder, "a.txt", b"second")
    assert isinstance(caught.value, FileExistsError) and isinstance(caught.value, ValidationError)
    assert caught.value.path == str(folder / "a.txt")
    with pytest.raises(FileAlreadyExists):
        check_free(folder, ["new.txt", "a.txt"])
    assert write_file(folder, "a.txt", b"second", overwrite=True).read_bytes() == b"second"
    assert sorted(os.listdir(folder)) == ["a.txt"]  # no temporary file left


def test_symbolic_links_are_never_written_through(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"keep")
    folder = target_directory(tmp_path / "dl")
    (folder / "x.txt").symlink_to(secret)
    (folder / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileAlreadyExists):
        write_file(folder, "x.txt", b"evil")
    with pytest.raises(FileAlreadyExists):
        write_file(folder, "dangling", b"evil")
    assert not (tmp_path / "nowhere").exists()
    write_file(folder, "x.txt", b"new", overwrite=True)
    assert secret.read_bytes() == b"keep" and not (folder / "x.txt").is_symlink()


def test_a_linked_folder_is_resolved_once_and_names_must_be_plain(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert target_directory(tmp_path / "link") == real
    for bad in ("", ".", "..", "a/b", "a\\b", "a\0b"):
        with pytest.raises(ValidationError, match="plain file name"):
            write_file(real, bad, b"x")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ValidationError, match="download folder"):
        target_directory(tmp_path / "file")
    assert destination(f"{tmp_path}/", "safe.txt") == (tmp_path.resolve(), "safe.txt")
    assert destination(real, "safe.txt") == (real, "safe.txt")
    assert destination(tmp_path / "new" / "mine.txt", "safe.txt") == (
        (tmp_path / "new").resolve(),
        "mine.txt",
    )


# -- the pure parts of labels, COPYUID, replies ----------------------------------------------


def test_labels_are_keywords_and_copyuid_maps_old_to_new() -> None:
    assert check_labels(["Boss", "$Important", "project-x", "a.b"]) == [
        "Boss",
        "$Important",
        "project-x",
        "a.b",
    ]
    with pytest.raises(ValidationError, match="'Cafe_label'"):
        check_labels(["Café label"])
    assert copyuid([b"OK [COPYUID 99 3:5,9 10:13] Moved"]) == {3: 10, 4: 11, 5: 12, 9: 13}
    assert copyuid([b"OK done"]) == {}


@pytest.mark.parametrize(
    ("subject", "reply", "forward"),
    [
        ("Hello", "Re: Hello", "Fwd: Hello"),
        ("Re: Hello", "Re: Hello", "Fwd: Re: Hello"),
        ("RE[2]: Hello", "RE[2]: Hello", "Fwd: RE[2]: Hello"),
        ("Fw: x", "Re: Fw: x", "Fw: x"),
        ("", "Re:", "Fwd:"),
    ],
)
def test_reply_and_forward_subjects(subject: str, reply: str, forward: str) -> None:
    assert (reply_subject(subject), forward_subject(subject)) == (reply, forward)


def test_quote_and_html_to_text() -> None:
    assert quote("a\r\n\r\n> b\nc\n") == "> a\n>\n>> b\n> c"
    html = "<html><head><style>p{}</style></head><body><p>Hi&amp;bye</p><script>x</script>ok</body>"
    assert html_to_text(html) == "Hi&bye\nok"
