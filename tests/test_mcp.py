"""The mcp plugin end to end: real MCP servers (tests/mcp_server.py, the official SDK) over stdio and
streamable HTTP on loopback, their tools called by the fake OpenAI's scripted tool calls."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from botcore import ConfigError
from botcore.testing.fake_openai import ChatReply, FakeOpenAI, ToolCall
from botcore.testing.fake_telegram import FakeTelegram

SERVER = Path(__file__).parent / "mcp_server.py"
TOOLS = {"add", "secret", "fail", "picture", "slow", "grow"}


def stdio(**more: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(SERVER), "stdio"], **more}


def mcp(servers: dict[str, dict[str, Any]], **more: Any) -> dict[str, dict[str, Any]]:
    return {"chat": {"stream": False}, "mcp": {"servers": servers, **more}}


def calls(*tool_calls: ToolCall) -> ChatReply:
    return ChatReply(tool_calls=list(tool_calls))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HttpServer:
    """tests/mcp_server.py serving streamable HTTP on a loopback port, as its own process."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVER),
            "http",
            str(self.port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(200):  # until it listens (uvicorn's start-up)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
            else:
                writer.close()
                await writer.wait_closed()
                return
        raise AssertionError("the MCP HTTP server did not start")

    async def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            await self.process.wait()
            self.process = None


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    server = HttpServer(free_port())
    yield server
    await server.kill()


@pytest.fixture
async def running_http_server(http_server: HttpServer) -> AsyncIterator[HttpServer]:
    await http_server.start()
    yield http_server


async def wait_until(condition: Callable[[], bool], seconds: float = 20) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110  (the bot has no event to wait on)
            await asyncio.sleep(0.05)


def offered(bot: Any) -> set[str]:
    return {d["function"]["name"] for d in bot.runtime.tools.definitions()}


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_server_tool_works_and_its_failure_is_told_to_the_model(
    start_bot,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    http_server: HttpServer,
    transport: str,
) -> None:
    if transport == "http":
        await http_server.start()
        server: dict[str, Any] = {"url": http_server.url}
    else:
        server = stdio(env={"SECRET": "s3"})
    await start_bot(["chat", "mcp"], settings=mcp({"calc": server}))
    openai_server.script_chat(
        calls(
            ToolCall("calc_add", {"a": 2, "b": 40}, "c1"),
            ToolCall("calc_fail", {"reason": "no disk"}, "c2"),
            ToolCall("calc_picture", {}, "c3"),
        ),
        "It is 42.",
    )
    reply = await telegram.reply_to("what is 2 + 40?")
    await telegram.wait_for(lambda: reply.text == "It is 42.")
    first, _ = openai_server.chat_requests
    tools = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert set(tools) == {f"calc_{name}" for name in TOOLS}
    assert tools["calc_add"]["description"] == "Add two whole numbers."
    assert tools["calc_add"]["parameters"]["type"] == "object"
    assert set(tools["calc_add"]["parameters"]["properties"]) == {"a", "b"}
    results = openai_server.tool_messages()
    assert results["c1"] == "42"
    assert results["c2"].startswith("Error: calc_fail failed:")
    assert "cannot do it: no disk" in results["c2"]
    assert results["c3"] == "[image image/png, 70 bytes: tool images are not shown to the model]"
    if transport == "stdio":  # env reaches a stdio server
        openai_server.script_chat(calls(ToolCall("calc_secret", {}, "c4")), "ok")
        await telegram.reply_to("secret?")
        assert openai_server.tool_messages() == {"c4": "s3"}


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_server_that_says_its_tools_changed_is_listed_again_at_once(
    start_bot,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    http_server: HttpServer,
    transport: str,
) -> None:
    if transport == "http":
        await http_server.start()
        server: dict[str, Any] = {"url": http_server.url}
    else:
        server = stdio()
    # Only the server's word can bring the new tool before the hour is out.
    bot = await start_bot(["chat", "mcp"], settings=mcp({"calc": server}, refresh_interval=3600))
    assert "calc_double" not in offered(bot)
    openai_server.script_chat(calls(ToolCall("calc_grow", {}, "c1")), "Grown.")
    await telegram.reply_to("grow")
    assert openai_server.tool_messages() == {"c1": "grown"}
    await wait_until(lambda: "calc_double" in offered(bot), 10)
    openai_server.script_chat(calls(ToolCall("calc_double", {"x": 21}, "c2")), "42.")
    await telegram.reply_to("double 21")
    assert "calc_double" in {
        t["function"]["name"] for t in openai_server.chat_requests[-2]["tools"]
    }
    assert openai_server.tool_messages() == {"c2": "42"}


async def test_a_slow_server_tool_times_out_like_a_plugin_tool(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot(
        ["chat", "mcp"],
        settings={**mcp({"calc": stdio()}), "chat": {"stream": False, "tool_timeout": 0.5}},
    )
    openai_server.script_chat(calls(ToolCall("calc_slow", {"seconds": 5}, "c1")), "Too slow.")
    reply = await telegram.reply_to("be slow")
    await telegram.wait_for(lambda: reply.text == "Too slow.")
    assert openai_server.tool_messages() == {"c1": "Error: calc_slow timed out after 0.5 s."}
    assert "calc_add" in offered(bot)  # the server still serves


async def test_bad_arguments_are_told_to_the_model(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat", "mcp"], settings=mcp({"calc": stdio()}))
    openai_server.script_chat(
        calls(ToolCall("calc_add", "[1, 2]", "c1"), ToolCall("calc_add", {"a": "x"}, "c2")), "No."
    )
    reply = await telegram.reply_to("add")
    await telegram.wait_for(lambda: reply.text == "No.")
    results = openai_server.tool_messages()
    assert results["c1"] == "Error: invalid arguments for calc_add: not a JSON object."
    assert results["c2"].startswith("Error: ")  # the server's own validation, told to the model


async def test_a_server_down_at_start_is_retried_while_the_bot_serves(
    start_bot,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    http_server: HttpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = await start_bot(
        ["chat", "mcp"], settings=mcp({"web": {"url": http_server.url, "connect_timeout": 2}})
    )
    assert "web (http) unavailable" in caplog.text
    openai_server.script_chat("Hello.")
    await telegram.reply_to("hi")
    assert "tools" not in openai_server.chat_requests[-1]  # nothing to offer yet
    await http_server.start()
    await wait_until(lambda: "web_add" in offered(bot))
    openai_server.script_chat(calls(ToolCall("web_add", {"a": 1, "b": 1}, "c1")), "Two.")
    reply = await telegram.reply_to("1 + 1?")
    await telegram.wait_for(lambda: reply.text == "Two.")
    assert openai_server.tool_messages() == {"c1": "2"}


async def test_a_stdio_server_killed_mid_run_is_reconnected(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    bot = await start_bot(
        ["chat", "mcp"],
        settings=mcp({"calc": stdio(env={"PIDFILE": str(pidfile)})}, refresh_interval=60),
    )
    first = int(pidfile.read_text())
    os.kill(first, signal.SIGKILL)
    # The model was offered the tool before the death was noticed: the call tells it.
    openai_server.script_chat(calls(ToolCall("calc_add", {"a": 1, "b": 2}, "c1")), "Later.")
    reply = await telegram.reply_to("1 + 2?")
    await telegram.wait_for(lambda: reply.text == "Later.")
    assert openai_server.tool_messages()["c1"].startswith(
        "Error: the MCP server calc is not reachable right now"
    )
    await wait_until(lambda: pidfile.read_text() != str(first) and "calc_add" in offered(bot))
    openai_server.script_chat(calls(ToolCall("calc_add", {"a": 1, "b": 2}, "c2")), "Three.")
    reply = await telegram.reply_to("1 + 2?")
    await telegram.wait_for(lambda: reply.text == "Three.")
    assert openai_server.tool_messages() == {"c2": "3"}
    assert bot.app.plugin_state("mcp").state == "on"  # a server's death is not the plugin's bug


async def test_an_http_server_killed_mid_run_is_noticed_and_reconnected(
    start_bot,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    running_http_server: HttpServer,
) -> None:
    bot = await start_bot(
        ["chat", "mcp"],
        settings=mcp({"web": {"url": running_http_server.url}}, refresh_interval=0.2),
    )
    assert "web_add" in offered(bot)
    await running_http_server.kill()
    await wait_until(lambda: "web_add" not in offered(bot))  # its tools are no longer offered
    openai_server.script_chat("No tools now.")
    await telegram.reply_to("hi")
    assert "tools" not in openai_server.chat_requests[-1]
    await running_http_server.start()
    await wait_until(lambda: "web_add" in offered(bot))
    openai_server.script_chat(calls(ToolCall("web_add", {"a": 20, "b": 22}, "c1")), "It is 42.")
    reply = await telegram.reply_to("20 + 22?")
    await telegram.wait_for(lambda: reply.text == "It is 42.")
    assert openai_server.tool_messages() == {"c1": "42"}


async def test_a_required_server_that_cannot_be_reached_stops_start_up(
    start_bot, http_server: HttpServer
) -> None:
    with pytest.raises(ConfigError) as caught:
        await start_bot(
            ["chat", "mcp"],
            settings=mcp({"web": {"url": http_server.url, "required": True, "connect_timeout": 2}}),
        )
    assert str(caught.value).startswith("plugins.mcp.servers.web: required, and cannot be reached:")
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("server", "error"),
    [
        ({}, "give either command (stdio) or url (streamable HTTP)"),
        ({"command": "x", "url": "http://127.0.0.1/mcp"}, "give either command"),
        ({"url": "http://127.0.0.1/mcp", "args": ["a"]}, "args, env and cwd go with command"),
        ({"command": "x", "headers": {"A": "b"}}, "headers go with url"),
        ({"url": "ftp://127.0.0.1/mcp"}, "url must start with http:// or https://"),
    ],
)
async def test_a_bad_server_table_is_a_config_error(
    start_bot, server: dict[str, Any], error: str
) -> None:
    with pytest.raises(ConfigError, match=r"plugins\.mcp\.servers") as caught:
        await start_bot(["chat", "mcp"], settings=mcp({"s": server}))
    assert error in str(caught.value)


async def test_a_bad_server_name_is_a_config_error(start_bot) -> None:
    with pytest.raises(ConfigError, match=r"server name 'a\.b'"):
        await start_bot(["chat", "mcp"], settings=mcp({"a.b": stdio()}))


def write_config(path: Path, servers: str) -> None:
    path.write_text(
        '[bot]\ntoken = "123456:mcp-cli-test"\nplugins = ["mcp"]\n' + servers, encoding="utf-8"
    )


async def test_botcore_plugins_lists_the_servers_and_check_connects(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    http_server: HttpServer,
) -> None:
    from botcore.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MCP_TOKEN", "t0ken-from-env")
    write_config(
        tmp_path / "bot.toml",
        f"""
[plugins.mcp.servers.calc]
command = "{sys.executable}"
args = ["{SERVER}", "stdio"]

[plugins.mcp.servers.web]
url = "{http_server.url}"
headers = {{ Authorization = "Bearer ${{MCP_TOKEN}}" }}
connect_timeout = 2
""",
    )
    assert await asyncio.to_thread(main, ["plugins"]) == 0
    out = capsys.readouterr().out
    assert "    server calc (stdio): add, secret, fail, picture, slow, grow\n" in out
    assert "    server web (http): cannot connect: ConnectError" in out
    assert await asyncio.to_thread(main, ["check"]) == 0
    captured = capsys.readouterr()
    assert (
        "tools: calc_add, calc_secret, calc_fail, calc_picture, calc_slow, calc_grow\n"
        in captured.out
    )
    assert "t0ken-from-env" not in captured.out + captured.err
    await http_server.start()
    assert await asyncio.to_thread(main, ["plugins"]) == 0
    assert (
        "    server web (http): add, secret, fail, picture, slow, grow\n" in capsys.readouterr().out
    )


async def test_botcore_check_exits_2_when_a_required_server_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from botcore.cli import main

    monkeypatch.chdir(tmp_path)
    write_config(
        tmp_path / "bot.toml",
        f"""
[plugins.mcp.servers.web]
url = "http://127.0.0.1:{free_port()}/mcp"
required = true
connect_timeout = 2
""",
    )
    assert await asyncio.to_thread(main, ["check"]) == 2
    assert (
        "botcore: error: plugins.mcp.servers.web: required, and cannot be reached: ConnectError"
        in capsys.readouterr().err
    )
