"""A real MCP client (the Python `mcp` SDK) against Salve's /mcp, for the serve tests.

Usage: mcp_client.py http URL TOKEN JOB_ID
       mcp_client.py stdio SALVE_BINARY SERVER_URL TOKEN JOB_ID   (runs `salve mcp`)
Prints one JSON object: the server's name, the tool names with their read-only hints, and the
results of jobs_logs (no cursor, then its nextCursor), failure_summary, a call with an unknown
job id, calls with missing, wrong-typed, out-of-range and hostile arguments, and one after those.
"""

import asyncio
import json
import sys

import contextlib
import os

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


def field(obj, camel, snake):
    """The SDK's 1.x names are camelCase, 2.x's snake_case."""
    return getattr(obj, snake, None) if hasattr(obj, snake) else getattr(obj, camel, None)


def plain(result):
    return {
        "isError": bool(field(result, "isError", "is_error")),
        "text": "".join(getattr(c, "text", "") for c in result.content),
        "structured": field(result, "structuredContent", "structured_content"),
    }


@contextlib.asynccontextmanager
async def connect(argv):
    if argv[0] == "http":
        url, token = argv[1], argv[2]
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with http:
            async with streamable_http_client(url, http_client=http) as streams:
                yield streams[0], streams[1]
    else:
        binary, server, token = argv[1], argv[2], argv[3]
        env = dict(os.environ, SALVE_TOKEN=token)
        params = StdioServerParameters(command=binary, args=["mcp", "--server", server], env=env)
        async with stdio_client(params) as streams:
            yield streams[0], streams[1]


async def main(argv):
    job_id = argv[-1]
    async with connect(argv) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        tools = (await session.list_tools()).tools
        logs = await session.call_tool("jobs_logs", {"job_id": job_id})
        older = None
        cursor = (field(logs, "structuredContent", "structured_content") or {}).get("nextCursor")
        if cursor:
            older = plain(await session.call_tool("jobs_logs", {"job_id": job_id, "cursor": cursor}))
        summary = await session.call_tool("failure_summary", {"job_id": job_id})
        unknown = await session.call_tool("failure_summary", {"job_id": "no-such-job"})
        bad = []
        for name, args in [
            ("jobs_logs", {}),
            ("jobs_logs", {"job_id": 5}),
            ("jobs_logs", {"job_id": job_id, "cursor": "-1"}),
            ("jobs_logs", {"job_id": job_id, "cursor": "x" * 100000}),
            ("jobs_logs", {"job_id": "../../../etc/passwd"}),
            ("failure_summary", {"job_id": "%2e%2e/%2e%2e/salve.db"}),
            ("jobs_describe", {"job_id": job_id, "organization_id": "someone-else"}),
            ("workflows_search", {"project_id": "p", "organization_id": "o", "limit": -5}),
            ("pipeline_jobs", {"pipeline_id": ["not", "a", "string"], "organization_id": "o"}),
            ("projects_list", {"organization_id": "x" * 1000000}),
            ("artifacts_list", {"organization_id": "o", "scope": "jobs", "scope_id": job_id}),
            ("get_test_results", {"scope": "everything"}),
            ("get_test_results", {"scope": "job"}),
            ("failure_summary", {}),
            ("projects_search", {"organization_id": "o"}),
        ]:
            r = await session.call_tool(name, args)
            bad.append({"call": name, "isError": bool(field(r, "isError", "is_error")),
                        "text": "".join(getattr(c, "text", "") for c in r.content)[:300]})
        # Still up and answering after all that.
        after = await session.call_tool("organizations_list", {})
        org = field(await session.call_tool("organizations_list", {}), "structuredContent", "structured_content")
        org_id = org["organizations"][0]["id"]
        described = await session.call_tool("jobs_describe", {"organization_id": org_id, "job_id": job_id})
        pipeline_id = field(described, "structuredContent", "structured_content")["pipelineId"]
        by_pipeline = await session.call_tool("failure_summary", {"pipeline_id": pipeline_id})
        search = await session.call_tool("projects_search", {"organization_id": org_id, "query": "AGENTIC"})
        tests = await session.call_tool("get_test_results", {"scope": "job", "job_id": job_id})
        artifacts = await session.call_tool(
            "artifacts_list", {"organization_id": org_id, "scope": "jobs", "scope_id": job_id})
        prompts = [p.name for p in (await session.list_prompts()).prompts]
        setup = await session.get_prompt("mcp_setup", {"project_name": "agentic"})
        print(json.dumps({
            "server": field(init, "serverInfo", "server_info").name,
            "tools": {
                t.name: bool(t.annotations and field(t.annotations, "readOnlyHint", "read_only_hint"))
                for t in tools
            },
            "jobs_logs": plain(logs),
            "jobs_logs_older": older,
            "failure_summary": plain(summary),
            "unknown": plain(unknown),
            "bad": bad,
            "after": plain(after),
            "prompts": prompts,
            "tests": plain(tests),
            "by_pipeline": plain(by_pipeline),
            "search": plain(search),
            "artifacts": plain(artifacts),
            "setup": "".join(getattr(m.content, "text", "") for m in setup.messages),
        }))


asyncio.run(main(sys.argv[1:]))
