"""The kit's leak check fails a test that leaks (in its own process or in a bot it spawned), and
can be switched off: each case is a real pytest run on a throwaway project (pytester), in a
process of its own so its leaks cannot reach this run's check."""

from __future__ import annotations

import pytest

from botcore.testing.leaks import leak_lines

LEAKS_A_SESSION = """
import aiohttp

async def test_leaks_a_session():
    aiohttp.ClientSession()
"""

CLOSES_ITS_SESSION = """
import aiohttp

async def test_closes_its_session():
    async with aiohttp.ClientSession():
        pass
"""

NEVER_AWAITED = """
import asyncio

async def test_forgets_to_await():
    asyncio.sleep(0)
"""

DROPS_A_PENDING_TASK = """
import asyncio

async def test_drops_a_task():
    loop = asyncio.new_event_loop()
    loop.create_task(asyncio.sleep(10))
    loop.close()
"""

LEAKY_PLUGIN = """
import aiohttp
from botcore import hookimpl

@hookimpl
async def startup(app):
    aiohttp.ClientSession()
"""

LEAKS_IN_A_MODULE_TEARDOWN = """
import logging
import pytest

@pytest.fixture(scope="module")
def resource():
    yield
    # What asyncio's handler logs for a session a module fixture dropped, after the test's check.
    logging.getLogger("asyncio").error("Unclosed client session")

def test_uses_it(resource):
    pass

def test_other():
    pass
"""

SPAWNS_A_LEAKY_BOT = """
import asyncio, os

async def test_bot_check(bot_harness):
    config = bot_harness.write_config("bot.toml", ["leaky_plugin"])
    env = bot_harness.env(PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    bot = await bot_harness.spawn(config, command="check", env=env, stderr=asyncio.subprocess.PIPE)
    await bot.wait()
"""


def run(pytester: pytest.Pytester, test: str, *args: str, ini: str = "") -> pytest.RunResult:
    pytester.makeini(f"[pytest]\nasyncio_mode = auto\n{ini}")
    pytester.makepyfile(test_it=test)
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", *args)


def test_a_leaked_session_fails_the_test(pytester: pytest.Pytester) -> None:
    result = run(pytester, LEAKS_A_SESSION)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ResourceWarning: Unclosed client session*"])


def test_a_closed_session_passes(pytester: pytest.Pytester) -> None:
    run(pytester, CLOSES_ITS_SESSION).assert_outcomes(passed=1)


def test_a_coroutine_never_awaited_fails_the_test(pytester: pytest.Pytester) -> None:
    result = run(pytester, NEVER_AWAITED)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*coroutine*sleep*was never awaited*"])


def test_a_destroyed_pending_task_fails_the_test(pytester: pytest.Pytester) -> None:
    result = run(pytester, DROPS_A_PENDING_TASK)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*Task was destroyed but it is pending*"])


def test_a_leak_in_a_spawned_bot_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(leaky_plugin=LEAKY_PLUGIN)
    result = run(pytester, SPAWNS_A_LEAKY_BOT)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*a bot process leaked resources*", "*Unclosed client session*"])


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_leak_outside_any_test_fails_the_run(pytester: pytest.Pytester, workers: str) -> None:
    """Also under pytest-xdist (-n 2), where a worker's own report would never be shown: the
    controller reports what its workers found."""
    result = run(pytester, LEAKS_IN_A_MODULE_TEARDOWN, "-n", workers)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*LEAKED RESOURCES outside any test*", "*Unclosed client session*"]
    )


def test_the_check_can_be_switched_off(pytester: pytest.Pytester) -> None:
    run(pytester, LEAKS_A_SESSION, ini="botcore_leak_check = false").assert_outcomes(passed=1)


def test_one_test_may_allow_leaks(pytester: pytest.Pytester) -> None:
    marked = "import pytest\n" + LEAKS_A_SESSION.replace(
        "async def", "@pytest.mark.allow_leaks\nasync def"
    )
    run(pytester, marked).assert_outcomes(passed=1)


def test_leak_lines_finds_what_asyncio_and_python_print() -> None:
    log = "\n".join(
        [
            "2026-01-01 12:00:00,000 INFO botcore.runner: polling",
            "2026-01-01 12:00:01,000 ERROR asyncio: Unclosed client session",
            "client_session: <aiohttp.client.ClientSession object at 0x7f>",
            "2026-01-01 12:00:01,000 ERROR asyncio: Unclosed connector",
            "2026-01-01 12:00:01,000 ERROR asyncio: Task was destroyed but it is pending!",
            "sys:1: RuntimeWarning: coroutine 'Bot.send_message' was never awaited",
            "Exception ignored in: <function BaseEventLoop.__del__ at 0x7f>",
            "RuntimeError: Event loop is closed",
            "app.py:3: ResourceWarning: unclosed <socket.socket fd=7>",
            "2026-01-01 12:00:02,000 INFO botcore.runner: stopped",
        ]
    )
    assert len(leak_lines(log)) == 7
