"""documents embeddings: a document's parts ranked by meaning as well as by words, through the
endpoint's /v1/embeddings, when `[plugins.documents] embeddings` names a model.

Each document's parts are embedded once (kept in `app.store` beside its parts, float32 in
base64, deleted with them), so a question costs one embedding: its own. Any failure (the
endpoint, a timeout, a stored vector of another model) leaves the ranking to BM25 alone: an
answer never fails for want of embeddings.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import sys
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botcore import Turn

if TYPE_CHECKING:
    from . import Settings

log = logging.getLogger(__name__)

VECTORS = "documents.vectors"
"""Store namespace: "<conversation key>/<document id>" -> {"model": ..., "vectors": [base64]}."""
BATCH = 256
"""Inputs per /v1/embeddings request (the API takes up to 2048)."""


def pack(vector: Sequence[float]) -> str:
    """A vector as little-endian float32 in base64 (a quarter of its JSON size)."""
    values = array("f", vector)
    if sys.byteorder == "big":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


def unpack(text: str) -> array[float]:
    values = array("f")
    values.frombytes(base64.b64decode(text))
    if sys.byteorder == "big":
        values.byteswap()
    return values


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine similarity of two vectors (0 for a zero vector or a length mismatch)."""
    if len(a) != len(b):
        return 0.0
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a) * math.fsum(y * y for y in b))
    return dot / norm if norm else 0.0


async def similarity(
    turn: Turn,
    settings: Settings,
    key: str | None,
    question: str,
    documents: Sequence[tuple[dict[str, Any], Sequence[str]]],
) -> list[float] | None:
    """The cosine of the question with every part of `documents` ((document, its parts' texts),
    in order), embedding the parts not embedded yet; None on any failure (BM25 then ranks)."""
    try:
        async with asyncio.timeout(settings.embeddings_timeout):
            return await _similarity(turn, settings, key, question, documents)
    except Exception as exc:
        log.warning(
            "update %s: embeddings failed, ranking by words alone: %s",
            turn.update_id,
            type(exc).__name__,
        )
        return None


async def _similarity(
    turn: Turn,
    settings: Settings,
    key: str | None,
    question: str,
    documents: Sequence[tuple[dict[str, Any], Sequence[str]]],
) -> list[float] | None:
    model = settings.embeddings
    assert model is not None
    store = turn.app.store
    vectors: list[list[Sequence[float]] | None] = []
    wanted: list[str] = [question]
    for document, parts in documents:
        if len(parts) > settings.embeddings_max_parts:
            log.info("%s has too many parts to embed: ranking by words", document.get("name"))
            return None
        kept = await store.get(VECTORS, f"{key}/{document['id']}") if key is not None else None
        if (
            isinstance(kept, dict)
            and kept.get("model") == model
            and len(kept.get("vectors") or ()) == len(parts)
        ):
            vectors.append([unpack(v) for v in kept["vectors"]])
        else:
            vectors.append(None)
            wanted.extend(parts)
    made = await _embed(turn, settings, wanted)
    asked, made = made[0], made[1:]
    scores: list[float] = []
    for (document, parts), kept_vectors in zip(documents, vectors, strict=True):
        known: Sequence[Sequence[float]]
        if kept_vectors is None:
            known, made = made[: len(parts)], made[len(parts) :]
            if key is not None:  # embedded once: later questions reuse them
                record = {"model": model, "vectors": [pack(v) for v in known]}
                await store.put(VECTORS, f"{key}/{document['id']}", record)
        else:
            known = kept_vectors
        scores.extend(cosine(asked, vector) for vector in known)
    return scores


async def _embed(turn: Turn, settings: Settings, texts: list[str]) -> list[list[float]]:
    """The embeddings of `texts`, in order, in batches; their tokens are metered."""
    import openai

    found: list[list[float]] = []
    for start in range(0, len(texts), BATCH):
        batch = texts[start : start + BATCH]
        result = await turn.app.openai.embeddings.create(
            model=str(settings.embeddings),
            input=batch,
            encoding_format="float",
            dimensions=settings.embedding_dimensions or openai.omit,
        )
        data = sorted(result.data, key=lambda item: item.index)
        if len(data) != len(batch):
            raise ValueError(f"{len(data)} embeddings for {len(batch)} inputs")
        found.extend(list(item.embedding) for item in data)
        if result.usage is not None:
            turn.meter("documents.embedding_tokens", result.usage.prompt_tokens or 0)
    return found
