"""The official MCP Python SDK against Engram, over streamable HTTP and stdio.

Environment:
  ENGRAM_MCP_URL    http://host:port/mcp of a running `engram serve`
  ENGRAM_TOKEN      a valid token for it (and for the stdio server)
  ENGRAM_BIN        the engram binary, for `engram mcp` over stdio
  ENGRAM_STDIO_ENV  JSON object: the environment of the stdio server
                    (data directory, models, secret)

Each transport: initialize, list the tools, remember a turn, recall it;
a call without a valid token is refused. Exits non-zero on any failure.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

TOOLS = {"remember", "recall", "store_memory", "memory_status", "forget"}


def text_of(result):
    assert not result.is_error, f"tool error: {result.content}"
    return json.loads(result.content[0].text)


async def exercise(session, label, session_id):
    init = await session.initialize()
    assert init.server_info.name == "engram", init.server_info
    listed = await session.list_tools()
    names = {t.name for t in listed.tools}
    assert TOOLS <= names, f"{label}: tools {names}"
    recall_tool = next(t for t in listed.tools if t.name == "recall")
    assert "q" in recall_tool.input_schema["properties"], recall_tool.input_schema
    assert recall_tool.description, "recall has no description"

    remembered = text_of(
        await session.call_tool(
            "remember",
            {
                "session_id": session_id,
                "turns": [
                    {
                        "role": "user",
                        "text": "Je suis allergique aux fruits de mer 🦐 — shellfish makes me ill.",
                        "timestamp": "2026-05-08T14:00:00Z",
                    },
                    {"role": "assistant", "text": "Noted, no shellfish."},
                ],
            },
        )
    )
    assert len(remembered["active_fragment_ids"]) == 2, remembered
    recalled = text_of(
        await session.call_tool(
            "recall", {"q": "what am I allergic to?", "session_id": session_id, "top_k": 3}
        )
    )
    texts = [h["text"] for h in recalled["hits"]["turns"]]
    assert any("shellfish" in t for t in texts), f"{label}: {texts}"
    assert recalled["mode"] == "active", recalled

    # Bad input is a tool error naming the field, not a crash.
    bad = await session.call_tool("recall", {"q": "x", "mode": "fast"})
    assert bad.is_error, bad
    assert "mode" in bad.content[0].text, bad.content[0].text
    print(f"{label}: ok ({len(texts)} turns recalled)")


async def over_http(url, token):
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await exercise(session, "http", "mcp-http")


async def refused_over_http(url, token):
    """No token, and a forged one: the server answers 401 before MCP."""
    for headers in ({}, {"Authorization": f"Bearer {token}x"}):
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            r = await http.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"}}},
                headers={"Accept": "application/json, text/event-stream"},
            )
            assert r.status_code == 401, (headers.keys(), r.status_code, r.text)
            assert r.json()["status"] == "UNAUTHENTICATED", r.text
    print("http: refused without a valid token")


async def over_stdio(binary, env, token):
    params = StdioServerParameters(
        command=binary, args=["mcp"], env={**env, "ENGRAM_TOKEN": token, "RUST_LOG": "warn"}
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await exercise(session, "stdio", "mcp-stdio")


async def refused_over_stdio(binary, env, token):
    params = StdioServerParameters(
        command=binary, args=["mcp"], env={**env, "ENGRAM_TOKEN": token + "x", "RUST_LOG": "warn"}
    )
    try:
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await asyncio.wait_for(session.initialize(), timeout=60)
    except Exception as e:  # the server exits before answering
        print(f"stdio: refused with an invalid token ({type(e).__name__})")
        return
    raise AssertionError("stdio server accepted an invalid token")


async def main():
    url = os.environ["ENGRAM_MCP_URL"]
    token = os.environ["ENGRAM_TOKEN"]
    binary = os.environ["ENGRAM_BIN"]
    env = json.loads(os.environ["ENGRAM_STDIO_ENV"])
    await over_http(url, token)
    await refused_over_http(url, token)
    await over_stdio(binary, env, token)
    await refused_over_stdio(binary, env, token)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
