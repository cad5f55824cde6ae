"""documents extract: the text of a PDF, DOCX, TXT, Markdown, HTML or CSV file, from bytes in memory.

PDF goes through pypdf (pure Python, no dependencies of its own); DOCX is a zip of XML read with
the standard library's zipfile and ElementTree (python-docx would add lxml for the same paragraphs
and tables), HTML with html.parser, CSV with csv. Nothing touches the disk. Every reader stops
at `max_chars` (and a PDF at `max_pages`), so one huge document costs bounded time and memory;
the callers run it in a worker thread, off the event loop.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import Any, Literal, TypeAlias
from xml.etree import ElementTree

Kind: TypeAlias = Literal["pdf", "docx", "text", "html", "csv"]

SUFFIXES: dict[str, Kind] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".markdown": "text",
    ".html": "html",
    ".htm": "html",
    ".csv": "csv",
}
MIME_TYPES: dict[str, Kind] = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/plain": "text",
    "text/markdown": "text",
    "text/x-markdown": "text",
    "text/html": "html",
    "text/csv": "csv",
}
DOCX_XML_LIMIT = 64 * 1024 * 1024
"""The most word/document.xml may unpack to: a zip bomb is refused before it is inflated."""
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
"""A password-protected DOCX is an OLE container (as old .doc files are), not a zip."""
W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


class Refused(Exception):
    """The document cannot be read; `reason` names the text that tells the user why."""

    def __init__(self, reason: Literal["encrypted", "corrupt", "empty", "scanned"]) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Extracted:
    """A document's text, in sections (a PDF's pages, labelled "p. N"; one unlabelled otherwise)."""

    sections: list[tuple[str | None, str]] = field(default_factory=list)
    pages: int | None = None
    """A PDF's page count (all of them, read or not)."""
    read_pages: int | None = None
    scanned: bool = False
    """A PDF page without text shows images: a scan, not an empty page."""
    truncated: bool = False
    """The document went past `max_chars` or `max_pages`: only its beginning was read."""

    @property
    def chars(self) -> int:
        return sum(len(text) for _, text in self.sections)

    @property
    def words(self) -> int:
        return sum(len(text.split()) for _, text in self.sections)


def kind_of(file_name: str | None, mime_type: str | None) -> Kind | None:
    """The reader for a file, by its name's suffix, else its MIME type; None: not supported."""
    suffix = PurePosixPath(file_name or "").suffix.lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    return MIME_TYPES.get((mime_type or "").split(";")[0].strip().lower())


def extract(data: bytes, kind: Kind, *, max_chars: int, max_pages: int) -> Extracted:
    """The text of a document (blocking: run it in a thread); Refused says why there is none."""
    if not data.strip():
        raise Refused("empty")
    if kind == "pdf":
        found = _pdf(data, max_chars, max_pages)
    elif kind == "docx":
        found = _capped(_docx(data), max_chars)
    else:
        text = decode(data)
        if kind == "html":
            found = _capped(_html(text), max_chars)
        elif kind == "csv":
            found = _capped(_csv(text[: max_chars * 2]), max_chars)
        else:
            found = _capped(text, max_chars)
    if not any(text.strip() for _, text in found.sections):
        raise Refused("scanned" if found.scanned else "empty")
    return found


def _capped(text: str, max_chars: int) -> Extracted:
    text = re.sub(r"\n{3,}", "\n\n", text.replace("\r\n", "\n")).strip()
    return Extracted([(None, text[:max_chars])], truncated=len(text) > max_chars)


def _pdf(data: bytes, max_chars: int, max_pages: int) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a warning per odd object of a user's file
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:  # an owner password alone (print/copy restrictions) opens with an empty one
                opened = bool(reader.decrypt(""))
            except (DependencyError, NotImplementedError):  # AES without a crypto library
                opened = False
            if not opened:
                raise Refused("encrypted")
        total = len(reader.pages)
        found = Extracted(pages=total)
        chars = 0
        for number, page in enumerate(reader.pages, 1):
            if number > max_pages or chars >= max_chars:
                found.truncated = True
                break
            text = (page.extract_text() or "").strip()[: max_chars - chars]
            chars += len(text)
            found.read_pages = number
            if text:
                found.sections.append((f"p. {number}", text))
            elif not found.scanned:
                found.scanned = _shows_images(page)
        return found
    except Refused:
        raise
    except FileNotDecryptedError:
        raise Refused("encrypted") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError):
        raise Refused("corrupt") from None
    except RecursionError:  # a self-referencing object tree
        raise Refused("corrupt") from None


def _shows_images(page: Any) -> bool:
    """Whether a PDF page's resources hold an image (or a form, which may draw one)."""
    try:
        objects = page["/Resources"].get_object().get("/XObject")
        return bool(objects is not None and len(objects.get_object()))
    except (KeyError, AttributeError, TypeError, ValueError):
        return False


def _docx(data: bytes) -> str:
    if data.startswith(OLE_MAGIC):
        raise Refused("encrypted")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("word/document.xml")
            if info.file_size > DOCX_XML_LIMIT:
                raise Refused("corrupt")
            xml = archive.read(info)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, RuntimeError):
        raise Refused("corrupt") from None
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        raise Refused("corrupt") from None
    return "\n".join(_docx_blocks(root.find(f"{W}body")))


def _docx_blocks(parent: ElementTree.Element | None) -> list[str]:
    """Paragraphs in order, a table's rows as "cell | cell" lines."""
    lines: list[str] = []
    for element in parent if parent is not None else ():
        if element.tag == f"{W}p":
            lines.append(_docx_paragraph(element))
        elif element.tag == f"{W}tbl":
            for row in element.iter(f"{W}tr"):
                cells = [
                    " ".join(_docx_paragraph(p) for p in cell.iter(f"{W}p")).strip()
                    for cell in row.iter(f"{W}tc")
                ]
                lines.append(" | ".join(cells))
        elif element.tag == f"{W}sdt":  # a content control: its content is ordinary blocks
            lines += _docx_blocks(element.find(f"{W}sdtContent"))
    return lines


def _docx_paragraph(paragraph: ElementTree.Element) -> str:
    parts: list[str] = []
    for node in paragraph.iter():
        if node.tag == f"{W}t" and node.text:
            parts.append(node.text)
        elif node.tag == f"{W}tab":
            parts.append("\t")
        elif node.tag in (f"{W}br", f"{W}cr"):
            parts.append("\n")
    return "".join(parts)


class _HTMLText(HTMLParser):
    """The visible text of a page: no scripts or styles, a line break at each block."""

    BLOCKS = frozenset(
        [
            "p",
            "div",
            "br",
            "li",
            "tr",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "table",
            "section",
            "article",
            "header",
            "footer",
            "pre",
            "blockquote",
        ]
    )
    HIDDEN = frozenset({"script", "style", "template", "noscript", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def _html(text: str) -> str:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    lines = (
        re.sub(r"[ \t\r\f\v]+", " ", line).strip(" |") for line in "".join(parser.parts).split("\n")
    )
    return "\n".join(line for line in lines if line)


def _csv(text: str) -> str:
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], ",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = csv.reader(io.StringIO(text), dialect)
        return "\n".join(" | ".join(cell.strip() for cell in row) for row in rows if any(row))
    except csv.Error:
        raise Refused("corrupt") from None


def decode(data: bytes) -> str:
    """Text bytes as a string: a BOM's encoding, else UTF-8, else Windows-1251 for a text that
    reads as Cyrillic that way, else Windows-1252. NUL bytes mean it is no text file at all."""
    for bom, encoding in (
        (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    if b"\x00" in data[:8192]:
        raise Refused("corrupt")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    cyrillic = data.decode("cp1251", errors="replace")
    letters = [c for c in cyrillic if c.isalpha()]
    if letters and sum("а" <= c.lower() <= "я" for c in letters) > len(letters) / 3:
        return cyrillic
    return data.decode("cp1252", errors="replace")
