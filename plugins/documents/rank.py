"""documents rank: a document cut into chunks, and the chunks that best match a question (BM25).

Lexical ranking is enough to find the part of a report a question names, and needs no model: a
dozen lines of Okapi BM25 over word prefixes (the first five letters: a crude stem that lets
"отчёта" find "отчёт" and "reports" find "report"; libraries for it bring numpy or scipy along).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

WORD = re.compile(r"\w+")
PREFIX = 5
K1 = 1.5
B = 0.75


def chunks(sections: Sequence[tuple[str | None, str]], size: int) -> list[tuple[str | None, str]]:
    """Cut each section into pieces of about `size` characters at paragraph, line or word
    boundaries; each piece keeps its section's label (a PDF's page)."""
    found: list[tuple[str | None, str]] = []
    for label, text in sections:
        piece = ""
        for block in _blocks(text, size):
            if piece and len(piece) + len(block) + 1 > size:
                found.append((label, piece))
                piece = ""
            piece = f"{piece}\n{block}" if piece else block
        if piece.strip():
            found.append((label, piece))
    return found


def _blocks(text: str, size: int) -> list[str]:
    """Lines no longer than `size` (a long one cut at words, a word longer still at `size`)."""
    found: list[str] = []
    for line in text.split("\n"):
        while len(line) > size:
            cut = line.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            found.append(line[:cut])
            line = line[cut:].lstrip()
        if line.strip():
            found.append(line)
    return found


def terms(text: str) -> list[str]:
    """The words of a text as the ranking compares them: lower case, ё as е, a five-letter prefix."""
    return [w[:PREFIX] for w in WORD.findall(text.lower().replace("ё", "е"))]


def bm25(question: str, texts: Sequence[str]) -> list[float]:
    """The Okapi BM25 score of each text for the question (0 for one sharing no word with it)."""
    wanted = set(terms(question))
    if not wanted or not texts:
        return [0.0] * len(texts)
    counts = [Counter(terms(text)) for text in texts]
    lengths = [sum(c.values()) for c in counts]
    average = sum(lengths) / len(lengths) or 1.0
    n = len(texts)
    idf = {
        term: math.log(1 + (n - df + 0.5) / (df + 0.5))
        for term in wanted
        if (df := sum(term in c for c in counts))
    }
    scores = []
    for count, length in zip(counts, lengths, strict=True):
        score = 0.0
        for term, weight in idf.items():
            tf = count.get(term, 0)
            if tf:
                score += weight * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
        scores.append(score)
    return scores
