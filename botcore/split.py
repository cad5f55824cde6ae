"""Cutting a message's (text, entities) into pieces Telegram accepts, each at the most natural
boundary that fits: paragraph, line, sentence, word, punctuation, grapheme cluster.

Grapheme clusters come from the ``regex`` module's ``\\X`` (UAX #29, updated with each Unicode
release, a C extension with wheels everywhere): the standard library has neither the
Grapheme_Cluster_Break nor the Extended_Pictographic property, a hand-written segmenter would
need their tables, and the ``grapheme`` package has not been updated since 2020."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Protocol

import regex
from telegram import MessageEntity

Piece = tuple[str, list[MessageEntity]]


class Entity(Protocol):
    """What the splitter reads of an entity: python-telegram-bot's MessageEntity, or the
    converter's own (made into MessageEntity only for the pieces, each once)."""

    @property
    def type(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def url(self) -> str | None: ...
    @property
    def language(self) -> str | None: ...
    @property
    def custom_emoji_id(self) -> str | None: ...


MAX_ENTITIES = 100
"""Entities Telegram keeps in one message: it drops the rest without a word (a link past the
100th loses its URL), so a piece holds at most this many (see botcore.testing.fake_telegram)."""

PARAGRAPH, LINE, SENTENCE, WORD, PUNCTUATION, GRAPHEME = range(6)
"""Cut levels, best first."""

# Spaces a line may break at. Not the no-break ones (U+00A0, U+2007, U+202F): a writer puts
# those exactly where a break would be wrong ("10 km", "№ 5").
_S = r"[\t\n\v\f\r \x85\u1680\u2000-\u2006\u2008-\u200a\u2028\u2029\u205f\u3000]"
_SPACE = regex.compile(_S + "+")
_ENDS = ".!?…‼⁇⁈⁉。！？｡"
_CLOSERS = "\"')]}»”’」』）】〉》"
# Whole runs of whitespace of each level, for the quick scan (_Splitter.quick_cut).
_RUNS = (
    (PARAGRAPH, regex.compile(f"{_S}*\n{_S}*\n{_S}*")),
    (LINE, regex.compile(f"{_S}*\n{_S}*")),
    (SENTENCE, regex.compile(f"(?<=[{_ENDS}][{regex.escape(_CLOSERS)}]*){_S}+")),
    (WORD, _SPACE),
)
# CJK full stops end a sentence with no space after them (Chinese and Japanese use none).
_CJK_STOP = regex.compile(r"[。！？｡][」』）”’】〉》]*")
# After a closing, final or other punctuation mark or a dash (、，：」 - /): where text without
# spaces may break. Not after an opening bracket or quote, which belongs to what follows.
_PUNCT = regex.compile(r"[\p{Po}\p{Pe}\p{Pf}\p{Pd}]+")
_GRAPHEME = regex.compile(r"\X")
_NO_BREAK_BEFORE = regex.compile(r"[\p{GCB=Extend}\p{GCB=ZWJ}\p{GCB=SpacingMark}]")
_NO_BREAK_AFTER = regex.compile(r"\p{GCB=Prepend}")
# Characters that cluster rules join to a neighbour: where there are none, every code point
# boundary is a cluster boundary.
_JOINING = regex.compile(
    r"[\r\p{GCB=Extend}\p{GCB=ZWJ}\p{GCB=SpacingMark}\p{GCB=Prepend}"
    r"\p{GCB=Regional_Indicator}\p{GCB=L}\p{GCB=V}\p{GCB=T}\p{GCB=LV}\p{GCB=LVT}]"
)
# A URL Telegram would link by itself; in text without spaces (CJK) its first letter ends it.
_BARE_URL = regex.compile(
    r"(?i)https?://[^\s\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\u3000-\u303f\uff00-\uffef]+"
)
_ASTRAL = regex.compile(r"[\U00010000-\U0010FFFF]")
_URL_TYPES = frozenset({"url", "text_link"})
_CODE_TYPES = frozenset({"pre", "code"})


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) >> 1


def split_message(
    text: str, entities: Sequence[Entity], limit: int, *, max_entities: int = MAX_ENTITIES
) -> list[Piece]:
    """(text, entities) -> pieces of at most `limit` UTF-16 units and `max_entities` entities,
    none blank, with each entity clipped to the pieces it covers (offsets rebased; a code block
    keeps its language).

    Cuts at the best boundary that fits, in this order: a blank line, a line break, the end of a
    sentence, a space, after punctuation (text without spaces), a grapheme cluster; never inside
    a URL or an entity when a cut outside fits, and never one that leaves a piece under half
    full when a later one fits. Whitespace at a cut is dropped, except the indentation of a
    code line that starts a piece."""
    if limit < 2:
        raise ValueError("a piece must hold at least one character (2 UTF-16 units)")
    fits = len(text) <= limit // 2 or utf16_len(text) <= limit
    if fits and len(entities) <= max_entities:  # the common case costs nothing more
        return [(text, [_message_entity(e) for e in entities])] if text.strip() else []
    return _Splitter(text, entities, limit, max_entities=max_entities).pieces()


def _message_entity(entity: Entity, offset: int | None = None, length: int = 0) -> MessageEntity:
    """`entity` as a MessageEntity, moved to `offset` with `length` if given."""
    if isinstance(entity, MessageEntity):
        if offset is None:
            return entity
        return MessageEntity(
            entity.type,
            offset,
            length,
            url=entity.url,
            user=entity.user,
            language=entity.language,
            custom_emoji_id=entity.custom_emoji_id,
            date_time_format=entity.date_time_format,
            unix_time=entity.unix_time,
        )
    return MessageEntity(
        entity.type,
        entity.offset if offset is None else offset,
        entity.length if offset is None else length,
        url=entity.url,
        language=entity.language,
        custom_emoji_id=entity.custom_emoji_id,
    )


class _Cut:
    """One place a piece may end: the piece ends at `end`, the next one starts at `start`
    (past the whitespace dropped at the cut)."""

    __slots__ = ("end", "level", "start")

    def __init__(self, level: int, end: int, start: int) -> None:
        self.level, self.end, self.start = level, end, start


class _Spans:
    """Disjoint sorted [start, end) code point ranges, asked whether a cut falls inside one."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for start, end in sorted(ranges):
            if end <= start:
                continue
            if merged and start < merged[-1][1]:  # overlapping (touching ones stay apart)
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [r[0] for r in merged]
        self.ends = [r[1] for r in merged]

    def cuts(self, end: int, start: int) -> bool:
        """True if a range has text both before `end` and from `start` on."""
        index = bisect_left(self.starts, end) - 1
        return index >= 0 and self.ends[index] > start


class _Splitter:
    """One split: the text's UTF-16 offsets, its entities, and the spans a cut should avoid."""

    def __init__(
        self,
        text: str,
        entities: Sequence[Entity],
        limit: int,
        *,
        quick: bool = True,
        max_entities: int = MAX_ENTITIES,
    ) -> None:
        self.text = text
        self.limit = limit
        self.max_entities = max_entities
        self.quick = quick  # False only to test that the quick scans choose as the full ones do
        self.ascii = text.isascii()  # then no cluster spans a space, and no check is needed
        # Code point <-> UTF-16 offsets: identity until the first character outside the BMP.
        self.astral = [m.start() for m in _ASTRAL.finditer(text)]
        self.astral16 = [index + n for n, index in enumerate(self.astral)]
        self.entities = sorted(
            (
                (self.floor(e.offset), self.ceil(e.offset + e.length), e)
                for e in entities
                if e.length > 0
            ),
            key=lambda item: item[0],
        )
        self.inside_entity = _Spans([(a, b) for a, b, _ in self.entities])
        urls = [(a, b) for a, b, e in self.entities if e.type in _URL_TYPES]
        urls += [m.span() for m in _BARE_URL.finditer(text)]
        self.inside_url = _Spans(urls)
        self.inside_code = _Spans([(a, b) for a, b, e in self.entities if e.type in _CODE_TYPES])

    def u16(self, index: int) -> int:
        """The UTF-16 offset of code point `index`."""
        return index + bisect_left(self.astral, index)

    def floor(self, offset: int) -> int:
        """The last code point index at or before UTF-16 `offset` (a half surrogate pair rounds
        down)."""
        before = bisect_right(self.astral16, offset - 2)  # astral characters wholly before it
        index = offset - before
        if before < len(self.astral16) and self.astral16[before] == offset - 1:
            index -= 1  # `offset` falls inside this astral character
        return max(0, min(index, len(self.text)))

    def ceil(self, offset: int) -> int:
        index = self.floor(offset)
        return index + 1 if self.u16(index) < offset and index < len(self.text) else index

    def pieces(self) -> list[Piece]:
        text, size = self.text, len(self.text)
        total = self.u16(size)
        ranges: list[tuple[int, int]] = []
        start = 0
        while start < size:
            bound = self.entity_bound(start)
            if total - self.u16(start) <= self.limit and bound is None:
                end, following = size, size
            else:
                last = self.floor(self.u16(start) + self.limit)
                cut = self.cut(start, last if bound is None else min(last, bound))
                end, following = cut.end, cut.start
            if text[start:end].strip():
                ranges.append((start, end))
            start = following
        return self.with_entities(ranges)

    def entity_bound(self, start: int) -> int | None:
        """Where the entity one past `max_entities` in a piece from `start` begins (the piece
        must end by then), or None if the rest of the text has no more than that many (or they
        all begin at `start`, where no cut can part them)."""
        if len(self.entities) <= self.max_entities:
            return None
        count = 0
        for begin, end, _ in self.entities:  # sorted by where they begin
            if end > start:
                count += 1
                if count > self.max_entities:
                    return begin if begin > start else None
        return None

    def cut(self, start: int, last: int) -> _Cut:
        """The best cut for a piece from `start` that may end no later than `last`: outside
        URLs, a space or a full stop if any fits (never mid-word then), else punctuation or a
        grapheme cluster boundary; inside a URL only when nothing else fits."""
        middle = (start + last) // 2
        if self.quick and (found := self.quick_cut(start, last, middle)):
            return found
        coarse = self.coarse_cuts(start, last)
        best = self.best(coarse, middle, urls=False)
        if best is None:
            if self.quick and (found := self.quick_fine_cut(start, last, middle)):
                return found
            fine = self.fine_cuts(start, last)
            best = self.best(fine, middle, urls=False) or self.best(
                coarse + fine, middle, urls=True
            )
        # A grapheme cluster longer than a whole message (thousands of combining marks): only
        # then a cut between code points.
        return best or _Cut(GRAPHEME, last, last)

    def quick_cut(self, start: int, last: int, middle: int) -> _Cut | None:
        """What `best(coarse_cuts(...))` would choose, found by a few C-speed scans when it is
        the latest cut of the best level in the second half of the room and lies outside URLs
        and entities (most prose); None when that is not so."""
        text = self.text
        stop = self.scan_end(last)
        for level, pattern in _RUNS:
            run = None
            for match in pattern.finditer(text, middle, stop):
                if match.start() > last:
                    break
                run = match
            if run and run.start() == middle > start and _SPACE.match(text, middle - 1):
                run = None  # the tail of a run that starts in the first half
            cut = None
            if run is not None and (cut := self.space_cut(start, *run.span(), level)) is None:
                return None  # not a cut after all: an earlier one may be, and is for the full scan
            if level == SENTENCE:
                stops = [m for m in self.cjk_stops(start, last) if m.end() >= middle]
                if stops and (cut is None or stops[-1].end() > cut.end):
                    cut = self.stop_cut(stops[-1].end())
                    if cut is None:
                        return None
            if cut is None:
                continue
            if self.inside_url.cuts(cut.end, cut.start):
                return None
            return None if self.inside_entity.cuts(cut.end, cut.start) else cut
        return None

    def quick_fine_cut(self, start: int, last: int, middle: int) -> _Cut | None:
        """What `best(fine_cuts(...))` would choose, when no character in the room joins a
        grapheme cluster (ASCII, CJK...) and the cut lies outside URLs and entities."""
        if _JOINING.search(self.text, start, last + 1):
            return None
        ends = [m.end() for m in _PUNCT.finditer(self.text, start, last)]
        cut = (
            _Cut(PUNCTUATION, ends[-1], ends[-1])
            if ends and ends[-1] >= middle
            else _Cut(GRAPHEME, last, last)
        )
        if self.inside_url.cuts(cut.end, cut.start) or self.inside_entity.cuts(cut.end, cut.start):
            return None
        return cut

    def best(self, cuts: list[_Cut], middle: int, *, urls: bool) -> _Cut | None:
        """The best of `cuts` (inside a URL or not): outside entities, then the best level, then
        the latest. But a cut that leaves the piece under half full yields to any later one:
        a short title, or the words before a long bold span, must not make a message of their
        own (each message also counts against Telegram's flood limits)."""
        chosen: _Cut | None = None
        chosen_rank = (True, True, GRAPHEME + 1, 0)
        for cut in cuts:
            rank = (cut.end < middle, False, cut.level, -cut.end)
            if rank >= chosen_rank:
                continue
            if not urls and self.inside_url.cuts(cut.end, cut.start):
                continue
            if self.inside_entity.cuts(cut.end, cut.start):
                rank = (rank[0], True, cut.level, -cut.end)
                if rank >= chosen_rank:
                    continue
            chosen, chosen_rank = cut, rank
        return chosen

    def coarse_cuts(self, start: int, last: int) -> list[_Cut]:
        """Cuts at whitespace (paragraph, line, sentence, word) and after CJK full stops."""
        cuts: list[_Cut] = []
        for match in _SPACE.finditer(self.text, start, self.scan_end(last)):
            if match.start() > last:
                break
            if (cut := self.space_cut(start, *match.span())) is not None:
                cuts.append(cut)
        for match in self.cjk_stops(start, last):
            if (cut := self.stop_cut(match.end())) is not None:
                cuts.append(cut)
        return cuts

    def scan_end(self, last: int) -> int:
        """Where a scan for whitespace runs that start by `last` may stop: past the run at
        `last`, so that its level is seen whole; not at the end of a long text."""
        run = _SPACE.match(self.text, last)
        return run.end() if run is not None else last + 1

    def space_cut(self, start: int, end: int, following: int, level: int = -1) -> _Cut | None:
        """The cut at the run of whitespace [end, following), or None if the character before
        it joins the run's cluster (a Prepend mark). Finds the run's level unless given."""
        text = self.text
        if end == start or (not self.ascii and _NO_BREAK_AFTER.match(text, end - 1)):
            return None
        lines = text.count("\n", end, following)
        if lines and self.inside_code.cuts(following, following):
            following = text.rfind("\n", end, following) + 1  # keep the code's indentation
        if not self.ascii and _NO_BREAK_BEFORE.match(text, following):
            following -= 1  # a mark on the last space: that space starts the next piece
        if level < 0:
            if lines >= 2:
                level = PARAGRAPH
            elif lines:
                level = LINE
            else:
                level = SENTENCE if self.ends_sentence(end) else WORD
        return _Cut(level, end, following)

    def cjk_stops(self, start: int, last: int) -> list[regex.Match[str]]:
        return list(_CJK_STOP.finditer(self.text, start, last))

    def stop_cut(self, end: int) -> _Cut | None:
        """The cut after a CJK full stop; None if a space follows (that space is the cut) or
        the next character belongs to the stop's cluster."""
        if _SPACE.match(self.text, end) or _NO_BREAK_BEFORE.match(self.text, end):
            return None
        return _Cut(SENTENCE, end, end)

    def ends_sentence(self, end: int) -> bool:
        index = end - 1
        while index > 0 and self.text[index] in _CLOSERS:
            index -= 1
        return self.text[index] in _ENDS

    def fine_cuts(self, start: int, last: int) -> list[_Cut]:
        """Cuts between grapheme clusters, better after punctuation."""
        text = self.text
        after_punct = {m.end() for m in _PUNCT.finditer(text, start, last)}
        cuts: list[_Cut] = []
        for match in _GRAPHEME.finditer(text, start):
            end = match.end()
            if end > last:
                break
            cuts.append(_Cut(PUNCTUATION if end in after_punct else GRAPHEME, end, end))
        return cuts

    def with_entities(self, ranges: list[tuple[int, int]]) -> list[Piece]:
        """The text of each [start, end) range with the entities clipped to it, rebased in
        UTF-16 units; one pass over the entities, as the ranges come in order."""
        pieces: list[Piece] = []
        following = 0  # the first entity not yet open
        open_: list[tuple[int, int, Entity]] = []
        for start, end in ranges:
            while following < len(self.entities) and self.entities[following][0] < end:
                open_.append(self.entities[following])
                following += 1
            base = self.u16(start)
            clipped = []
            for a, b, entity in open_:
                if b > start:
                    offset = self.u16(max(a, start))
                    length = self.u16(min(b, end)) - offset
                    clipped.append(_message_entity(entity, offset - base, length))
            pieces.append((self.text[start:end], clipped))
            open_ = [item for item in open_ if item[1] > end]  # the rest may reach later pieces
        return pieces
