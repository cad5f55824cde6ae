"""Documents in chat end to end: files the tests make go through the fake Telegram, and the
fake OpenAI records what the model was given."""

from __future__ import annotations

import asyncio
from typing import Any

from documents_files import docx, encrypted_pdf, pdf

from botcore.testing.fake_openai import ErrorReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram

PLUGINS = ["history", "documents", "chat"]
SETTINGS: dict[str, Any] = {"history": {}, "documents": {}, "chat": {"stream": False}}
REPORT = pdf(
    "Annual report 2024\nTotal revenue was 42 million euros.",
    "The report was signed by Anna Petrova, chief financial officer.",
)


def excerpts(messages: list[dict[str, Any]]) -> str:
    """The system message the documents lent the chat plugin (just before the question), or ""."""
    if len(messages) >= 2 and messages[-2]["role"] == "system" and len(messages) > 2:
        return str(messages[-2]["content"])
    return ""


async def send_file(
    telegram: FakeTelegram,
    data: bytes,
    name: str,
    mime: str,
    caption: str | None = None,
    **who: Any,
) -> str:
    """Send a document and return the text of the bot's answer."""
    await telegram.send_voice(
        data, kind="document", mime_type=mime, file_name=name, caption=caption, **who
    )
    chat = who.get("chat_id", who.get("user_id", 42))
    reply = await telegram.next_message(chat)
    return reply.text or ""


async def test_a_pdf_with_a_question_is_answered_and_follow_ups_see_it(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(PLUGINS, settings=SETTINGS)
    openai_server.script_chat("42 million euros.", "Anna Petrova signed it.")
    answer = await send_file(
        telegram, REPORT, "report.pdf", "application/pdf", caption="What was the revenue?"
    )
    assert answer == "42 million euros."
    messages = openai_server.last_chat_messages()
    assert messages[-1] == {
        "role": "user",
        "content": "[document: report.pdf, 2 pages]\nWhat was the revenue?",
    }
    lent = excerpts(messages)
    assert "From the document report.pdf the user sent (p. 1, part 1 of 2):" in lent
    assert "Total revenue was 42 million euros." in lent and "Anna Petrova" in lent  # it fits

    assert (await telegram.reply_to("Who signed the report?")).text == "Anna Petrova signed it."
    messages = openai_server.last_chat_messages()
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "system", "user"]
    assert messages[1]["content"].startswith("[document: report.pdf, 2 pages]")
    assert "signed by Anna Petrova" in excerpts(messages)
    # What was lent is for one request: the history keeps none of it.
    assert all("Total revenue" not in m["content"] for m in messages[:3])


async def test_a_long_document_lends_only_the_parts_a_question_names(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    topics = ["giraffes", "volcanoes", "pottery", "glaciers", "violins", "tramways"]
    pages = [
        f"Chapter {i + 1} is about {t}. " + f"More on {t}. " * 40 for i, t in enumerate(topics)
    ]
    settings = {**SETTINGS, "documents": {"context_tokens": 600, "chunk_chars": 800}}
    await start_bot(PLUGINS, settings=settings)
    answer = await send_file(telegram, pdf(*pages), "atlas.pdf", "application/pdf")
    assert answer == "I have read atlas.pdf (6 pages). Ask me anything about it."
    assert openai_server.chat_requests == []  # no caption: nothing to ask the model yet

    await telegram.reply_to("Tell me about the violins")
    lent = excerpts(openai_server.last_chat_messages())
    assert "violins" in lent and "(p. 5," in lent
    assert not any(topic in lent for topic in topics if topic != "violins")
    messages = openai_server.last_chat_messages()
    assert messages[1] == {"role": "user", "content": "[document: atlas.pdf, 6 pages]"}

    await telegram.reply_to("Summarise it")  # names nothing in it: the beginning goes
    lent = excerpts(openai_server.last_chat_messages())
    assert "Chapter 1 is about giraffes" in lent and "tramways" not in lent


async def test_every_supported_type_is_read(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(PLUGINS, settings=SETTINGS)
    html = (
        "<html><head><title>t</title><style>p{color:red}</style></head><body>"
        "<h1>Menu</h1><p>Soup of the day: borscht</p><script>var secret = 1;</script>"
        "<table><tr><td>Tea</td><td>2 EUR</td></tr></table></body></html>"
    )
    cases = [
        (
            docx(
                ["Minutes of the meeting", "Budget approved."], [["Item", "Cost"], ["Desk", "90"]]
            ),
            "minutes.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            ["Minutes of the meeting\nBudget approved.\nItem | Cost\nDesk | 90"],
        ),
        (b"Plain notes: buy milk.", "notes.txt", "text/plain", ["Plain notes: buy milk."]),
        (
            b"# Title\n\n- point *one*",
            "readme.md",
            "text/markdown",
            ["# Title\n- point *one*"],
        ),
        (html.encode(), "menu.html", "text/html", ["Menu\nSoup of the day: borscht\nTea | 2 EUR"]),
        (b"name;age\nAnna;31\nBoris;45\n", "people.csv", "text/csv", ["name | age\nAnna | 31"]),
        # Windows-1251, as old Russian files are.
        ("Привет, мир: отчёт готов.".encode("cp1251"), "old.txt", "text/plain", ["отчёт готов"]),
    ]
    for user, (data, name, mime, expected) in enumerate(cases, 100):  # a chat each: no pacing
        answer = await send_file(telegram, data, name, mime, user_id=user)
        assert answer.startswith(f"I have read {name} ("), answer
        await telegram.reply_to(f"What is in {name}?", user_id=user)
        lent = excerpts(openai_server.last_chat_messages())
        assert lent.startswith(f"From the document {name} the user sent (part 1 of 1):\n")
        for text in expected:
            assert text in lent, (name, lent)
        if name == "menu.html":
            assert "secret" not in lent and "color" not in lent


async def test_unreadable_files_get_clear_messages(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {**SETTINGS, "documents": {"max_mb": 0.01}}
    await start_bot(PLUGINS, settings=settings)
    cases = [
        (
            encrypted_pdf("hidden"),
            "locked.pdf",
            "application/pdf",
            "locked.pdf is protected with a password, so I cannot read it.",
        ),
        (
            b"%PDF-1.4\nnot really a pdf at all",
            "broken.pdf",
            "application/pdf",
            "I could not read broken.pdf: the file is damaged",
        ),
        (
            b"PK\x03\x04 broken zip",
            "broken.docx",
            "application/octet-stream",
            "I could not read broken.docx: the file is damaged",
        ),
        (b"\x00\x01\x02binary", "data.txt", "text/plain", "I could not read data.txt"),
        (b" \n\t\n", "blank.txt", "text/plain", "blank.txt has no text in it."),
        (pdf("", ""), "blank.pdf", "application/pdf", "blank.pdf has no text in it."),
        (
            pdf("x", image_only=True),
            "scan.pdf",
            "application/pdf",
            "scan.pdf has no text layer: its pages are scanned images.",
        ),
        (
            b"PK\x03\x04",
            "archive.zip",
            "application/zip",
            "I cannot read archive.zip: I read PDF, DOCX, TXT, Markdown, HTML and CSV files.",
        ),
        (
            b"word " * 5000,
            "huge.txt",
            "text/plain",
            "huge.txt is too big: I read documents of up to 0.01 MB.",
        ),
    ]
    for user, (data, name, mime, expected) in enumerate(cases, 100):  # a chat each: no pacing
        answer = await send_file(telegram, data, name, mime, user_id=user)
        assert answer.startswith(expected), (name, answer)
    answer = await send_file(
        telegram, encrypted_pdf("hidden"), "locked.pdf", "application/pdf", language_code="ru"
    )
    assert answer.startswith("Файл locked.pdf защищён паролем")
    answer = await send_file(
        telegram, pdf("x", image_only=True), "scan.pdf", "application/pdf", language_code="ru"
    )
    assert answer.startswith("В scan.pdf нет текстового слоя")
    assert openai_server.chat_requests == []
    # Nothing was attached: a question goes to the model without excerpts.
    await telegram.reply_to("hello")
    assert excerpts(openai_server.last_chat_messages()) == ""


async def test_a_document_past_the_caps_is_read_in_part(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {**SETTINGS, "documents": {"max_pages": 2}}
    await start_bot(PLUGINS, settings=settings)
    answer = await send_file(
        telegram, pdf("one", "two", "three", "four"), "long.pdf", "application/pdf"
    )
    assert answer == (
        "I have read long.pdf (4 pages). Ask me anything about it. "
        "It is long: I read only the first 2 pages of it."
    )
    await telegram.reply_to("What is on the pages?")
    messages = openai_server.last_chat_messages()
    assert messages[1]["content"] == "[document: long.pdf, 4 pages, only the first 2 read]"
    assert "three" not in excerpts(messages) and "two" in excerpts(messages)


async def test_clear_forgets_the_documents(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot(PLUGINS, settings=SETTINGS)
    await send_file(telegram, REPORT, "report.pdf", "application/pdf")
    store = bot.app.store
    [key] = (await store.scan("documents")).keys()
    assert len(await store.scan("documents.parts")) == 1
    assert (await telegram.reply_to("/clear")).text == "Done: I have forgotten our conversation."
    # The documents go in the turn's end hook, which runs once the reply is sent.
    for _ in range(100):
        if await store.scan("documents") == {} and await store.scan("documents.parts") == {}:
            break
        await asyncio.sleep(0.02)
    assert await store.scan("documents") == {} and await store.scan("documents.parts") == {}
    await telegram.reply_to("What was the revenue?")
    assert openai_server.last_chat_messages()[1:] == [
        {"role": "user", "content": "What was the revenue?"}
    ]
    assert key == "chat:42"


async def test_lent_excerpts_count_against_the_chat_budget(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    chat = {"stream": False, "context_tokens": 600}
    settings = {**SETTINGS, "chat": chat, "documents": {"context_tokens": 2000}}
    await start_bot(PLUGINS, settings=settings)
    pages = [f"Part {i}: " + "lorem ipsum dolor " * 60 for i in range(6)]
    await send_file(telegram, pdf(*pages), "big.pdf", "application/pdf")
    await telegram.reply_to("lorem?")
    messages = openai_server.last_chat_messages()
    total = sum(len(str(m["content"])) for m in messages)
    assert excerpts(messages) and total <= 600 * 3  # chat's own estimate: ~3 characters a token


async def test_in_a_group_only_addressed_documents_are_read(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(PLUGINS, settings=SETTINGS)
    group = {"chat_id": -100, "chat_type": "group"}
    await telegram.send_voice(
        REPORT, kind="document", mime_type="application/pdf", file_name="r.pdf", **group
    )
    bot = f"@{telegram.bot_username}"
    answer = await send_file(
        telegram, REPORT, "r.pdf", "application/pdf", caption=f"{bot} revenue?", **group
    )
    assert answer.startswith("echo:")
    [request] = openai_server.chat_requests
    assert request["messages"][-1]["content"] == "Test: [document: r.pdf, 2 pages]\nrevenue?"
    assert "42 million" in excerpts(request["messages"])


async def test_a_spoken_question_finds_the_document(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """Listed after voice (as in the default bot.toml), documents sees the transcript."""
    from botcore.testing.fake_openai import sample_audio

    settings = {**SETTINGS, "voice": {"show_transcript": False}}
    await start_bot(["history", "chat", "voice", "documents"], settings=settings)
    await send_file(telegram, REPORT, "report.pdf", "application/pdf")
    openai_server.script_transcription("Who signed the report?")
    audio, mime = sample_audio()
    await telegram.send_voice(audio, mime_type=mime)
    await telegram.next_message(42)
    messages = openai_server.last_chat_messages()
    assert messages[-1] == {"role": "user", "content": "Who signed the report?"}
    assert "signed by Anna Petrova" in excerpts(messages)


async def test_only_the_newest_documents_are_kept(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot(PLUGINS, settings={**SETTINGS, "documents": {"max_documents": 1}})
    await send_file(telegram, b"Cats purr.", "cats.txt", "text/plain")
    await send_file(telegram, b"Dogs bark.", "dogs.txt", "text/plain")
    [index] = (await bot.app.store.scan("documents")).values()
    assert [d["name"] for d in index] == ["dogs.txt"]
    assert len(await bot.app.store.scan("documents.parts")) == 1
    await telegram.reply_to("What do the animals do?")
    lent = excerpts(openai_server.last_chat_messages())
    assert "Dogs bark." in lent and "Cats" not in lent


TOPICS = ["giraffes", "volcanoes", "pottery", "glaciers", "violins", "tramways"]
ATLAS = pdf(
    *(f"Chapter {i + 1} is about {t}. " + f"More on {t}. " * 40 for i, t in enumerate(TOPICS))
)
EMBEDDINGS = {
    **SETTINGS,
    "documents": {
        "context_tokens": 600,
        "chunk_chars": 800,
        "embeddings": "text-embedding-3-small",
    },
}


def meaning(text: str, dimensions: int) -> list[float]:
    """The fake's vectors with a sense of meaning: violins are string instruments."""
    lowered = text.lower()
    musical = "violin" in lowered or "string instrument" in lowered
    return (
        [1.0, 0.0, *[0.0] * (dimensions - 2)] if musical else [0.0, 1.0, *[0.0] * (dimensions - 2)]
    )


def embedding_inputs(openai_server: FakeOpenAI) -> list[list[str]]:
    return [
        list((r.json or {}).get("input") or [])
        for r in openai_server.requests
        if r.path.endswith("/embeddings") and r.status == 200
    ]


async def test_embeddings_rank_parts_by_meaning_and_embed_each_part_once(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    openai_server.embedder = meaning
    await start_bot(PLUGINS, settings=EMBEDDINGS)
    await send_file(telegram, ATLAS, "atlas.pdf", "application/pdf")
    # No word of the question is in the violins chapter ("chapter" is in all of them): only
    # the meaning finds it.
    await telegram.reply_to("Which chapter covers string instruments?")
    lent = excerpts(openai_server.last_chat_messages())
    assert "violins" in lent
    assert not any(topic in lent for topic in TOPICS if topic != "violins")
    [first] = embedding_inputs(openai_server)
    assert first[0] == "Which chapter covers string instruments?" and len(first) > 6
    assert any("Chapter 5 is about violins" in text for text in first[1:])
    # The next question embeds itself only: the parts' vectors were kept with the document.
    await telegram.reply_to("And the tramways?")
    assert embedding_inputs(openai_server)[1:] == [["And the tramways?"]]
    assert "tramways" in excerpts(openai_server.last_chat_messages())
    # Every request names the configured model.
    usage = [r for r in openai_server.requests if r.path.endswith("/embeddings")]
    assert all(r.json and r.json["model"] == "text-embedding-3-small" for r in usage)


async def test_a_failing_embeddings_endpoint_falls_back_to_words(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {**EMBEDDINGS, "documents": {**EMBEDDINGS["documents"], "embeddings_timeout": 0.5}}
    await start_bot(PLUGINS, settings=settings)
    await send_file(telegram, ATLAS, "atlas.pdf", "application/pdf")
    openai_server.fail(
        "embeddings", ErrorReply(400, "The model does not exist.", "invalid_request_error")
    )
    openai_server.script_chat("About violins.")
    assert (await telegram.reply_to("Tell me about the violins")).text == "About violins."
    lent = excerpts(openai_server.last_chat_messages())
    assert "violins" in lent and "tramways" not in lent  # BM25 found it
    # A hung endpoint: the question waits embeddings_timeout, then words rank.
    openai_server.fail("embeddings", ErrorReply(hang=5))
    openai_server.script_chat("About glaciers.")
    assert (await telegram.reply_to("Tell me about the glaciers")).text == "About glaciers."
    assert "glaciers" in excerpts(openai_server.last_chat_messages())
    # Once the endpoint answers, the parts are embedded (then kept) and ranking uses them.
    await telegram.reply_to("Tell me about the pottery")
    [embedded] = embedding_inputs(openai_server)
    assert embedded[0] == "Tell me about the pottery" and len(embedded) > 6


async def test_a_question_about_a_document_reads_the_conversation_once(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """The documents plugin (which markers are still there?) and the chat plugin (the context)
    both load the conversation of a turn: the store is read for it once."""
    running = await start_bot(PLUGINS, settings=SETTINGS)
    await send_file(telegram, REPORT, "report.pdf", "application/pdf", caption="Revenue?")
    store = running.app.store
    reads: list[str] = []
    real = store.list_read

    async def counted(namespace: str, key: str, **kwargs: Any) -> list[Any]:
        reads.append(key)
        return await real(namespace, key, **kwargs)

    store.list_read = counted
    await telegram.reply_to("Who signed the report?")
    assert "signed by Anna Petrova" in excerpts(openai_server.last_chat_messages())
    assert reads == ["chat:42"]
