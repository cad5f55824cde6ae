"""The plugin guide and the README's plugin sections run as written, so they cannot rot.

Every ```python block is one of:
- a plugin module (it has `@botcore.hookimpl`; its docstring begins `NAME: ...`): a real bot
  loads it through the testing kit, and answers /help and each of its commands;
- tests (it defines `test_...` functions): they run with pytest against the real kit, beside
  every plugin module of the same document, importable by its NAME;
- a fragment, marked by `<!-- not-tested: why -->` on the line before it: kept rare.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.pytest_plugin import StartBot

REPO = Path(__file__).resolve().parent.parent
DOCS = {
    "docs/plugin-guide.md": None,  # all of it
    "README.md": "## Writing a plugin",  # that section, up to the next "## "
}
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?:python|py)\b[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
NOT_TESTED = re.compile(r"^<!-- not-tested: (?P<why>.*\S.*) -->$")
MAX_NOT_TESTED = 2
"""Fragments are the exception: a block worth showing is almost always worth running."""
PLUGIN_NAME = re.compile(r'^"""(?P<name>[a-z][a-z0-9_]*): ')
TEST_FUNCTION = re.compile(r"^(?:async )?def test_\w+", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One ```python block of a document."""

    doc: str
    line: int
    code: str
    not_tested: str | None
    """Why it is not run (`<!-- not-tested: why -->` before it), or None."""

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def plugin(self) -> str | None:
        """The plugin's name if the block is a plugin module."""
        match = PLUGIN_NAME.match(self.code)
        return match["name"] if match and "@botcore.hookimpl" in self.code else None

    @property
    def tests(self) -> int:
        """How many test functions the block defines."""
        return len(TEST_FUNCTION.findall(self.code))


def blocks(doc: str) -> list[Block]:
    """The python blocks of `doc` (of its section, for the README), with their line numbers."""
    text = (REPO / doc).read_text(encoding="utf-8")
    heading = DOCS[doc]
    start, end = 0, len(text)
    if heading is not None:
        start = text.index(f"\n{heading}\n") + 1
        following = text.find("\n## ", start + len(heading))
        end = len(text) if following == -1 else following
    found = []
    for match in FENCE.finditer(text, start, end):
        indent = len(match["indent"])
        code = "".join(line[indent:] for line in match["code"].splitlines(keepends=True))
        before = text[: match.start()].rstrip().rpartition("\n")[2].strip()
        marker = NOT_TESTED.match(before)
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(doc, line, code, marker["why"] if marker else None))
    return found


ALL = [block for doc in DOCS for block in blocks(doc)]
PLUGINS = [block for block in ALL if block.plugin and block.not_tested is None]


def test_every_python_block_is_run_or_says_why() -> None:
    for doc in DOCS:
        assert len(blocks(doc)) >= 2, f"{doc}: the extractor found almost no python blocks"
    fragments = [block for block in ALL if block.not_tested is not None]
    assert len(fragments) <= MAX_NOT_TESTED, f"too many untested blocks: {fragments}"
    unknown = [str(b) for b in ALL if b.not_tested is None and not b.plugin and not b.tests]
    assert not unknown, (
        "python blocks that are neither a plugin module (@botcore.hookimpl and a docstring "
        f"'name: ...') nor tests: {unknown}; make them one, or mark <!-- not-tested: why -->"
    )
    mixed = [str(b) for b in ALL if b.plugin and b.tests]
    assert not mixed, f"a block is a plugin or tests, not both: {mixed}"
    for doc in DOCS:
        names = [b.plugin for b in PLUGINS if b.doc == doc]
        assert len(names) == len(set(names)), f"{doc}: two plugin blocks share a name: {names}"


@pytest.fixture
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder on sys.path for plugin modules; what the test imported from it is forgotten."""
    folder = tmp_path_factory.mktemp("doc_plugins")
    sys.path.insert(0, str(folder))
    before = set(sys.modules)
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            if (getattr(sys.modules[name], "__file__", None) or "").startswith(str(folder)):
                del sys.modules[name]


@pytest.mark.parametrize("block", PLUGINS, ids=str)
async def test_a_plugin_block_runs_in_a_real_bot(
    block: Block,
    plugin_dir: Path,
    start_bot: StartBot,
    telegram: FakeTelegram,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = block.plugin
    assert name is not None
    (plugin_dir / f"{name}.py").write_text(block.code, encoding="utf-8")
    bot = await start_bot([name])
    info = next(info for info in bot.runtime.plugins.infos if info.name == name)
    # What runs is the block itself (an installed package of that name, such as the README's
    # dice, must be the very same code).
    assert inspect.getsource(info.module).strip() == block.code.strip()
    assert info.hooks, f"{block}: no hook implementation was found"
    commands = [c for plugin, c in bot.runtime.commands.values() if plugin == name]
    listing = (await telegram.reply_to("/help")).text or ""
    for command in commands:
        if not command.hidden:
            assert f"/{command.name}" in listing, f"{block}: /{command.name} is not in /help"
    failed = bot.app.t("error", "en")
    for command in commands:
        reply = await telegram.reply_to(f"/{command.name}")
        assert reply.text and reply.text != failed, f"{block}: /{command.name} failed"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, f"{block}: {errors}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("doc", [doc for doc in DOCS if any(b.tests for b in blocks(doc))])
def test_the_test_blocks_pass_against_the_real_kit(
    doc: str, tmp_path: Path, bot_output: Callable[[str], None]
) -> None:
    """Each test block is a test file of its own in a fresh pytest run, as a plugin author's
    suite would be, with the document's plugin modules importable by name (PYTHONPATH, so a
    bot the tests start as its own process finds them too)."""
    found = [block for block in blocks(doc) if block.not_tested is None]
    plugins, tests = tmp_path / "plugins", tmp_path / "tests"
    plugins.mkdir()
    tests.mkdir()
    for block in found:
        if block.plugin:
            (plugins / f"{block.plugin}.py").write_text(block.code, encoding="utf-8")
        elif block.tests:
            (tests / f"test_line_{block.line}.py").write_text(block.code, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    path = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=280,
    )
    bot_output(result.stdout + result.stderr)
    expected = sum(block.tests for block in found)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(rf"\b{expected} passed\b", result.stdout), result.stdout[-2000:]
