"""Splitting long answers: every piece fits Telegram's limit, nothing is lost, and no cut falls
inside a word, a URL, an entity or a grapheme cluster when a better one fits."""

from __future__ import annotations

from dataclasses import dataclass, field

import regex
import telegramify_markdown
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import MessageEntity

from botcore.delivery import CAPTION_LIMIT, TEXT_LIMIT, _truncate, render
from botcore.split import Piece, _Splitter, split_message, utf16_len
from botcore.testing.fake_openai import ChatReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram

SPACE = regex.compile(r"[\t\n\v\f\r \x85\u1680\u2000-\u2006\u2008-\u200a\u2028\u2029\u205f\u3000]")
BARE_URL = regex.compile(
    r"(?i)https?://[^\s\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\u3000-\u303f\uff00-\uffef]+"
)
CJK_STOP_END = regex.compile(r"[。！？｡][」』）”’】〉》]*$")
CLUSTERS = [
    "👨\u200d👩\u200d👧\u200d👦",  # ZWJ family
    "🏳️\u200d🌈",  # flag with variation selector and ZWJ
    "🇺🇦",  # regional indicator pair
    "👍🏽",  # skin tone
    "1️⃣",  # keycap
    "e\u0301",  # combining acute
    "Z̤͔ͧ̑̓",  # a pile of combining marks
    "😀",  # one surrogate pair
    "ก\u0e33",  # Thai with a spacing mark
]


# --------------------------------------------------------------------------- checks


def u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def cp_index(text: str, offset16: int) -> int:
    """The code point index of a UTF-16 offset that must fall between code points."""
    count = 0
    for index, char in enumerate(text):
        if count == offset16:
            return index
        count += 2 if ord(char) > 0xFFFF else 1
        assert count <= offset16 or count - 1 != offset16, "offset inside a surrogate pair"
    assert count == offset16, "offset past the text"
    return len(text)


def locate(text: str, pieces: list[Piece]) -> list[int]:
    """Where each piece starts in `text`; between pieces only whitespace may be missing."""
    starts, position = [], 0
    for piece, _ in pieces:
        start = text.find(piece, position)
        assert start >= 0, f"piece not found in order: {piece[:40]!r}"
        assert not text[position:start].strip(), f"text lost: {text[position:start][:40]!r}"
        starts.append(start)
        position = start + len(piece)
    assert not text[position:].strip(), f"text lost at the end: {text[position:][:40]!r}"
    return starts


def last_fit(text: str, start: int, limit: int) -> int:
    """The furthest end of a piece from `start` within `limit` UTF-16 units."""
    used, end = 0, start
    while end < len(text):
        used += 2 if ord(text[end]) > 0xFFFF else 1
        if used > limit:
            break
        end += 1
    return end


def url_spans(text: str, entities: list[MessageEntity]) -> list[tuple[int, int]]:
    spans = [m.span() for m in BARE_URL.finditer(text)]
    for e in entities:
        if e.type in ("url", "text_link"):
            spans.append((cp_index(text, e.offset), cp_index(text, e.offset + e.length)))
    return spans


def word_boundary_fits(
    text: str, start: int, end_max: int, urls: list[tuple[int, int]], boundaries: set[int]
) -> bool:
    """A space that a piece from `start` could end at (within `end_max`), outside every URL
    and not joined to a neighbour's grapheme cluster."""
    for match in regex.finditer(SPACE.pattern + "+", text, pos=start + 1):
        cut, following = match.span()
        if cut > end_max:
            return False
        if following not in boundaries:  # a mark on the last space: that space is kept
            following -= 1
        inside_url = any(a < cut and b > following for a, b in urls)
        if cut in boundaries and following in boundaries and not inside_url:
            return True
    return False


def check(text: str, entities: list[MessageEntity], limit: int, pieces: list[Piece]) -> None:
    """Every property a split must have (see the module docstring)."""
    starts = locate(text, pieces)
    boundaries = {0} | {m.end() for m in regex.finditer(r"\X", text)}
    clusters = {m.start(): m.end() for m in regex.finditer(r"\X", text)}
    urls = url_spans(text, entities)
    covered: set[tuple[object, int]] = set()
    kept: set[int] = set()
    for (piece, piece_entities), start in zip(pieces, starts, strict=True):
        assert piece.strip(), "blank piece"
        assert u16(piece) <= limit
        piece.encode("utf-16-le")  # strict: a lone surrogate would raise
        kept.update(range(start, start + len(piece)))
        for e in piece_entities:
            assert e.offset >= 0 and e.length > 0 and e.offset + e.length <= u16(piece)
            a, b = cp_index(piece, e.offset), cp_index(piece, e.offset + e.length)
            covered.update(((e.type, e.url, e.language), start + i) for i in range(a, b))
    expected = set()
    for e in entities:
        a, b = cp_index(text, e.offset), cp_index(text, e.offset + e.length)
        expected.update(((e.type, e.url, e.language), i) for i in range(a, b) if i in kept)
    assert covered == expected, "entities cover other characters than before"

    for index in range(len(pieces) - 1):
        start, piece = starts[index], pieces[index][0]
        end, following = start + len(piece), starts[index + 1]
        for position in (end, following):
            if position not in boundaries:  # only if the cluster alone outgrows a message
                cluster_start = max(b for b in boundaries if b < position)
                assert u16(text[cluster_start : clusters[cluster_start]]) > limit
        if any(a < end and b > following for a, b in urls):  # only if nothing else fits
            room = range(start + 1, last_fit(text, start, limit) + 1)
            assert all(any(a < p < b for a, b in urls) for p in room if p in boundaries), (
                f"cut inside a URL though a cut outside fits: {text[end - 20 : end + 20]!r}"
            )
        mid_word = (
            end == following
            and not SPACE.match(text, end - 1)
            and not SPACE.match(text, end)
            and not CJK_STOP_END.search(text[:end])
        )
        if mid_word:
            fits = word_boundary_fits(text, start, last_fit(text, start, limit), urls, boundaries)
            assert not fits, (
                f"cut mid-word though a space fits: ...{text[end - 20 : end]!r}|"
                f"{text[end : end + 20]!r}"
            )


# --------------------------------------------------------------------------- arbitrary text


@dataclass
class Sample:
    text: str
    entities: list[MessageEntity] = field(default_factory=list)
    clusters: list[tuple[int, int]] = field(default_factory=list)  # must never be cut inside


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéüßж", min_size=1, max_size=12)
CJK = st.text(alphabet="中文字测试日本語かなカナ漢字、，。！？「」", min_size=1, max_size=120)
URL = st.builds(
    lambda scheme, rest: f"{scheme}://example.com/{rest}",
    st.sampled_from(["http", "https"]),
    st.text(alphabet="abcxyz0123/-_?=&.%", max_size=400),
)
# Long runs without spaces but with punctuation (a path, a list written without spaces).
NO_SPACES = st.lists(
    st.tuples(st.integers(1, 80), st.sampled_from(["-", ",", "/", "、", "(", ""])), max_size=12
).map(lambda parts: "w" + "".join("w" * n + mark for n, mark in parts))
# Tokens that join the character before them (after a space too): combining acute, ZWJ, a skin
# tone, a spacing mark.
JOINING = st.sampled_from(["\u0301ab", "\u200dx", "\U0001f3fdz", "\u0e33n"])
PUNCT = st.sampled_from([".", "!", "?", "…", ",", ":", ";", "-", "»", ")"])
SEPARATOR = st.sampled_from([" ", " ", " ", "\n", "\n\n", "  ", "", " \n "])
ENTITY_TYPES = ["bold", "italic", "underline", "code", "pre", "text_link", "spoiler"]


@st.composite
def samples(
    draw: st.DrawFn, long_word: int = 600, separator: st.SearchStrategy[str] = SEPARATOR
) -> Sample:
    """Text built from words, long words, CJK, emoji sequences, URLs and punctuation, with
    entities (bold, code blocks, links...) over runs of whole tokens."""
    token = st.one_of(
        WORD,
        WORD,
        CJK,
        st.sampled_from(CLUSTERS),
        URL,
        PUNCT,
        st.integers(1, long_word).map(lambda n: "w" * n),
        NO_SPACES,
        JOINING,
    )
    tokens = draw(st.lists(st.tuples(token, separator), min_size=1, max_size=80))
    text, spans, clusters = "", [], []
    for value, gap in tokens:
        if value in CLUSTERS:
            clusters.append((len(text), len(text) + len(value)))
        spans.append((u16(text), u16(text + value)))
        text += value + gap
    entities = []
    for _ in range(draw(st.integers(0, 6))):
        first = draw(st.integers(0, len(spans) - 1))
        last = draw(st.integers(first, min(len(spans) - 1, first + 8)))
        kind = draw(st.sampled_from(ENTITY_TYPES))
        offset, end = spans[first][0], spans[last][1]
        entities.append(
            MessageEntity(
                kind,
                offset,
                end - offset,
                url="https://example.org/x" if kind == "text_link" else None,
                language="python" if kind == "pre" else None,
            )
        )
    for match in BARE_URL.finditer(text):  # what Telegram would mark as url entities
        if draw(st.booleans()):
            entities.append(MessageEntity("url", u16(text[: match.start()]), u16(match.group())))
    return Sample(text, entities, clusters)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples(), st.integers(2, 400))
def test_split_properties(sample: Sample, limit: int) -> None:
    pieces = split_message(sample.text, sample.entities, limit)
    check(sample.text, sample.entities, limit, pieces)
    starts = locate(sample.text, pieces)
    cuts = {s + len(p) for (p, _), s in zip(pieces, starts, strict=True)} | set(starts)
    for a, b in sample.clusters:
        if u16(sample.text[a:b]) <= limit:
            assert not any(a < cut < b for cut in cuts), f"cluster cut: {sample.text[a:b]!r}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples(long_word=6000))
def test_split_properties_at_telegrams_limits(sample: Sample) -> None:
    text = sample.text * max(1, 9000 // max(1, len(sample.text)))  # past 4096 as a rule
    entities = [e for e in sample.entities if e.offset + e.length <= u16(text)]
    for limit in (TEXT_LIMIT, CAPTION_LIMIT):
        check(text, entities, limit, split_message(text, entities, limit))


MARKDOWN_TOKEN = st.one_of(
    WORD,
    WORD.map(lambda w: f"**{w}**"),
    WORD.map(lambda w: f"_{w}_"),
    WORD.map(lambda w: f"`{w}`"),
    WORD.map(lambda w: f"[{w}](https://example.com/{w})"),
    st.lists(WORD, min_size=1, max_size=30).map(lambda ws: "```python\n" + "\n".join(ws) + "\n```"),
    CJK,
    st.sampled_from(CLUSTERS),
    URL,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(MARKDOWN_TOKEN, SEPARATOR), min_size=1, max_size=60),
    st.integers(2, 300),
)
def test_markdown_render_properties(tokens: list[tuple[str, str]], limit: int) -> None:
    markdown = "".join(
        value + ("\n\n" if "```" in value else separator) for value, separator in tokens
    )
    plain, raw = telegramify_markdown.convert(markdown)
    entities = [
        MessageEntity(e.type, e.offset, e.length, url=e.url, language=e.language) for e in raw
    ]
    check(plain, entities, limit, render(markdown, True, limit))


# --------------------------------------------------------------------------- one example per rule


def joined_words(pieces: list[Piece]) -> list[str]:
    return " ".join(piece for piece, _ in pieces).split()


def test_a_short_text_is_one_piece_as_it_is() -> None:
    bold = [MessageEntity("bold", 0, 5)]
    assert split_message("Hello world", bold, TEXT_LIMIT) == [("Hello world", bold)]
    assert split_message(" \n ", [], TEXT_LIMIT) == []


def test_a_5000_character_paragraph_is_cut_between_words() -> None:
    words = [f"word{i}" for i in range(900)]
    text = " ".join(words)
    assert len(text) > 5000
    pieces = split_message(text, [], TEXT_LIMIT)
    assert len(pieces) == 2
    assert joined_words(pieces) == words
    assert pieces[0][0].endswith(words[len(pieces[0][0].split()) - 1])
    check(text, [], TEXT_LIMIT, pieces)


def test_paragraphs_then_lines_then_sentences_come_first() -> None:
    sentence = "A sentence of some words here. "
    paragraph = (sentence * 40).strip()  # 1239 characters
    short = (sentence * 10).strip()
    text = paragraph + "\n\n" + short + "\n" + paragraph
    assert split_message(text, [], 2000)[0][0] == paragraph  # the blank line, not the later line
    text = paragraph + "\n" + paragraph
    assert split_message(text, [], 1800)[0][0] == paragraph  # the line, not a later sentence
    first = split_message(paragraph, [], 500)[0][0]
    assert first.endswith("here.") and len(first) > 450  # a sentence, not a later word


def test_an_early_boundary_does_not_make_a_tiny_message() -> None:
    """A blank line in the first half of the room yields to a sentence end further on: one
    short title must not cost a message of its own (each counts against flood limits)."""
    body = ("Some words that make a sentence. " * 160).strip()
    pieces = split_message("Title\n\n" + body, [], TEXT_LIMIT)
    assert len(pieces) == 2
    assert pieces[0][0].startswith("Title\n\nSome") and pieces[0][0].endswith("sentence.")
    assert len(pieces[0][0]) > TEXT_LIMIT - 40


def test_9000_characters_of_chinese_are_cut_after_full_stops() -> None:
    sentence = "这是一个没有空格的中文句子，用来测试分割、标点和字符。"
    text = sentence * (9000 // len(sentence) + 1)
    pieces = split_message(text, [], TEXT_LIMIT)
    assert len(pieces) == 3
    assert all(piece.endswith("。") for piece, _ in pieces)
    assert "".join(piece for piece, _ in pieces) == text
    check(text, [], TEXT_LIMIT, pieces)


def test_text_without_spaces_or_stops_is_cut_after_punctuation_then_between_clusters() -> None:
    text = "漢字、" * 2000
    pieces = split_message(text, [], TEXT_LIMIT)
    assert all(piece.endswith("、") for piece, _ in pieces)
    family = "👨\u200d👩\u200d👧\u200d👦"  # 11 UTF-16 units, one cluster
    pieces = split_message(family * 1000, [], TEXT_LIMIT)
    assert all(piece == family * (len(piece) // len(family)) for piece, _ in pieces)
    assert sum(len(piece) for piece, _ in pieces) == len(family) * 1000
    flags = "🇺🇦🇩🇪" * 1500  # a cut between regional indicators would swap every flag after it
    pieces = split_message(flags, [], TEXT_LIMIT)
    assert all(len(piece) % 2 == 0 for piece, _ in pieces)


def test_a_long_url_straddling_the_limit_moves_whole_to_the_next_piece() -> None:
    url = "https://example.com/" + "a/b-c" * 60
    text = "word " * 780 + url + " and the rest."
    start = text.index(url)
    assert start < TEXT_LIMIT < start + len(url)
    for entities in ([], [MessageEntity("url", start, len(url))]):
        pieces = split_message(text, entities, TEXT_LIMIT)
        assert pieces[1][0].startswith(url)
        check(text, entities, TEXT_LIMIT, pieces)
    link = [MessageEntity("text_link", start, len(url), url="https://example.com")]
    assert split_message(text, link, TEXT_LIMIT)[1][0].startswith(url)


def test_a_link_with_spaces_or_a_url_in_text_without_spaces_is_never_cut() -> None:
    words = "click here to read the whole article on the subject"
    text = "word " * 810 + words + " and more words after it."
    start = text.index(words)
    assert start < TEXT_LIMIT < start + len(words)
    link = [MessageEntity("text_link", start, len(words), url="https://example.com")]
    pieces = split_message(text, link, TEXT_LIMIT)
    assert pieces[1][0].startswith(words)
    assert [(e.type, e.offset, e.length) for e in pieces[1][1]] == [("text_link", 0, len(words))]
    url = "https://example.com/a/b/c/" + "d" * 40
    text = "漢字" * 2030 + url + "漢字" * 100  # no space anywhere: the cut goes before the URL
    pieces = split_message(text, [], TEXT_LIMIT)
    assert pieces[1][0].startswith(url)
    check(text, [], TEXT_LIMIT, pieces)


def test_a_url_longer_than_a_message_is_cut_only_because_it_must() -> None:
    url = "https://example.com/" + "x" * 5000
    pieces = split_message("see " + url, [], TEXT_LIMIT)
    assert [p for p, _ in pieces] == ["see", url[:TEXT_LIMIT], url[TEXT_LIMIT:]]


def test_a_6000_character_code_block_continues_as_code_with_its_language() -> None:
    code = "\n".join(f"    print({i:04d})  # step" for i in range(260))
    assert len(code) > 6000
    text = "Here is the code:\n\n" + code + "\n\nThat is all."
    start = text.index(code)
    entities = [MessageEntity("pre", start, len(code), language="python")]
    pieces = split_message(text, entities, TEXT_LIMIT)
    assert len(pieces) == 2
    (first, first_entities), (second, second_entities) = pieces
    assert first.startswith("Here is the code:\n\n    print(0000)") and first.endswith("# step")
    assert [(e.type, e.offset, e.language) for e in first_entities] == [("pre", 19, "python")]
    assert second.startswith("    print(") and second.endswith("# step\n\nThat is all.")
    assert [(e.type, e.offset, e.language) for e in second_entities] == [("pre", 0, "python")]
    assert first[19:] + "\n" + second[: -len("\n\nThat is all.")] == code  # whole lines
    check(text, entities, TEXT_LIMIT, pieces)


def test_a_code_block_that_fits_whole_starts_a_message_rather_than_being_cut() -> None:
    code = "\n".join(f"    print({i:04d})  # step" for i in range(100))
    text = "word " * 700 + "\n\n" + code
    start = text.index(code)
    entities = [MessageEntity("pre", start, len(code), language="python")]
    pieces = split_message(text, entities, TEXT_LIMIT)
    assert [p for p, _ in pieces] == [text[: start - 3], code]
    assert [(e.offset, e.length) for e in pieces[1][1]] == [(0, len(code))]


def test_a_short_bold_span_at_the_cut_moves_whole_to_the_next_piece() -> None:
    text = "plain " * 680 + "bold words in the middle" + " tail" * 50
    start = text.index("bold words")
    assert start < TEXT_LIMIT < start + 24
    entities = [MessageEntity("bold", start, 24)]
    pieces = split_message(text, entities, TEXT_LIMIT)
    assert pieces[1][0].startswith("bold words in the middle")
    assert [(e.offset, e.length) for e in pieces[1][1]] == [(0, 24)]
    check(text, entities, TEXT_LIMIT, pieces)


def test_a_bold_span_longer_than_the_cut_is_split_in_two_rebased() -> None:
    prefix = "Intro 😀 "  # an astral character before it: offsets are UTF-16, not code points
    body = ("bold " * 1200).strip()
    text = prefix + body + " after"
    offset = u16(prefix)
    entities = [MessageEntity("bold", offset, len(body)), MessageEntity("italic", 0, 5)]
    pieces = split_message(text, entities, TEXT_LIMIT)
    assert len(pieces) == 2
    (first, first_entities), (second, second_entities) = pieces
    assert [(e.type, e.offset, e.length) for e in first_entities] == [
        ("italic", 0, 5),
        ("bold", offset, u16(first) - offset),
    ]
    assert [(e.type, e.offset) for e in second_entities] == [("bold", 0)]
    assert second_entities[0].length == len(second) - len(" after")
    check(text, entities, TEXT_LIMIT, pieces)


def test_a_cluster_longer_than_a_message_is_the_only_cut_inside_one() -> None:
    zalgo = "Z" + "\u0301" * 5000
    pieces = split_message(zalgo, [], TEXT_LIMIT)
    assert "".join(p for p, _ in pieces) == zalgo and all(u16(p) <= TEXT_LIMIT for p, _ in pieces)


def test_captions_are_cut_at_a_word_within_1024_utf16_units() -> None:
    caption = "😀 " * 600  # 1800 UTF-16 units in 1200 code points
    cut = _truncate(caption, CAPTION_LIMIT)
    assert cut is not None and cut.endswith("😀…") and u16(cut) <= CAPTION_LIMIT
    assert _truncate("a short caption", CAPTION_LIMIT) == "a short caption"
    assert _truncate(None, CAPTION_LIMIT) is None
    long_words = ("caption " * 200).strip()
    cut = _truncate(long_words, CAPTION_LIMIT)
    assert cut is not None and cut.endswith("caption…") and utf16_len(cut) <= CAPTION_LIMIT


# --------------------------------------------------------------------------- end to end


async def test_a_5000_character_answer_arrives_whole_and_never_cut_mid_word(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"])
    words = [f"token{i}" for i in range(800)] + ["naïve", "😀", "👍🏽", "end."]
    answer = "Intro line.\n\n" + " ".join(words)
    assert len(answer) > 5000
    openai_server.script_chat(ChatReply(text=answer, chunk_delay=0.002))
    await telegram.send_message("write a lot")
    await telegram.wait_for(
        lambda: any("end." in (m.text or "") for m in telegram.bot_messages(42)), timeout=20
    )
    await telegram.wait_for(lambda: len(telegram.bot_messages(42)) >= 2)
    messages = [m.text or "" for m in telegram.bot_messages(42)]
    assert all(utf16_len(m) <= TEXT_LIMIT for m in messages)
    # All text arrives, and no word was cut (a cut word would read as two).
    assert " ".join(messages).split() == answer.split()
    assert all(c.status == 200 for c in telegram.requests if c.method != "getUpdates")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(samples(), samples(separator=st.sampled_from([" ", "", "  "]))), st.integers(2, 400)
)
def test_the_quick_scans_choose_as_the_full_ones_do(sample: Sample, limit: int) -> None:
    quick = split_message(sample.text, sample.entities, limit)
    full = _Splitter(sample.text, sample.entities, limit, quick=False).pieces()
    assert quick == full or utf16_len(sample.text) <= limit


def test_500_links_are_split_at_most_100_entities_a_piece() -> None:
    """Telegram keeps 100 entities of a message and drops the rest (botcore.split.MAX_ENTITIES)."""
    answer = " ".join(f"[site {i}](https://example.com/{i})" for i in range(500))
    pieces = render(answer, markdown=True)
    assert all(len(entities) <= 100 for _, entities in pieces)
    urls = [e.url for _, entities in pieces for e in entities if e.type == "text_link"]
    assert urls == [f"https://example.com/{i}" for i in range(500)]
    assert (
        " ".join(text for text, _ in pieces).split()
        == " ".join(f"site {i}" for i in range(500)).split()
    )
    assert len(pieces) == 5  # as few as the limit allows: 5000 characters, 500 entities


async def test_an_answer_with_500_links_arrives_with_every_link(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": {"stream": False}})
    openai_server.script_chat(
        "\n".join(f"{i}. [source {i}](https://example.com/{i})" for i in range(500))
    )
    await telegram.send_message("sources please")
    await telegram.wait_for(
        lambda: any("source 499" in (m.text or "") for m in telegram.bot_messages(42)),
        timeout=20,
    )
    messages = telegram.bot_messages(42)
    assert all(len(m.entities) <= 100 for m in messages)
    links = [e["url"] for m in messages for e in m.entities if e["type"] == "text_link"]
    assert links == [f"https://example.com/{i}" for i in range(500)]  # none dropped
