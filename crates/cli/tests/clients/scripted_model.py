"""A scripted model for agent tests: an OpenAI Responses API server on 127.0.0.1 that records
every request and answers from a script. No model is reachable from the test machines; this is
the one stand-in the tests allow.

Usage: scripted_model.py RECORD_FILE TOOL_SUFFIX ARGUMENTS_JSON
Prints the port it listens on, then serves until killed. The first request that offers a tool
whose name ends with TOOL_SUFFIX gets a function call of it with ARGUMENTS_JSON; once the
request carries that call's output, the model answers with a message quoting it.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECORD, SUFFIX, ARGUMENTS = sys.argv[1], sys.argv[2], sys.argv[3]


def events(response_id, items):
    yield {"type": "response.created", "response": {"id": response_id}}
    for item in items:
        yield {"type": "response.output_item.done", "item": item}
    yield {"type": "response.completed", "response": {
        "id": response_id,
        "usage": {"input_tokens": 10, "input_tokens_details": None, "output_tokens": 5,
                  "output_tokens_details": None, "total_tokens": 15}}}


class Handler(BaseHTTPRequestHandler):
    count = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        with open(RECORD, "a") as f:
            f.write(json.dumps({"path": self.path, "body": body}) + "\n")
        Handler.count += 1
        inputs = body.get("input", [])
        outputs = [i for i in inputs if isinstance(i, dict) and i.get("type") == "function_call_output"]
        # Tools come flat, or grouped in a namespace (Codex puts each MCP server's in one).
        tools = []
        for t in body.get("tools", []):
            if t.get("type") == "namespace":
                tools += [(t.get("name"), sub.get("name", "")) for sub in t.get("tools", [])]
            else:
                tools.append((None, t.get("name", "")))
        tool = next(((ns, name) for ns, name in tools if name.endswith(SUFFIX)), None)
        if outputs:
            text = json.dumps(outputs[-1].get("output"))[:2000]
            items = [{"type": "message", "role": "assistant", "id": "msg_2",
                      "content": [{"type": "output_text", "text": "The tool said: " + text}]}]
        elif tool:
            call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": tool[1],
                    "arguments": ARGUMENTS}
            if tool[0]:
                call["namespace"] = tool[0]
            items = [call]
        else:
            items = [{"type": "message", "role": "assistant", "id": "msg_1",
                      "content": [{"type": "output_text", "text": "No tool ending in " + SUFFIX}]}]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for e in events(f"resp_{Handler.count}", items):
            self.wfile.write(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode())
        self.wfile.flush()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
