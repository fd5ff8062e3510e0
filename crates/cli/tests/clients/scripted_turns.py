"""A scripted model for the heal agent's tests: answers OpenAI chat completions
(/chat/completions), OpenAI Responses (/responses) and Anthropic Messages (/messages) in their
own shapes, turn by turn from a script, and records every request (path, auth headers, body).
No model is reachable from the test machines; this is the one stand-in the tests allow.

Usage: scripted_turns.py SCRIPT_JSON RECORD_FILE
SCRIPT_JSON: {"turns": [{"calls": [{"name": "read_file", "arguments": {...}}]}, {"text": "..."}]}
Request N (from 0) gets turn N; past the script, a plain "done" message. Prints the port.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCRIPT = json.load(open(sys.argv[1]))["turns"]
RECORD = sys.argv[2]


def chat(turn, n):
    calls = [{"id": f"call_{n}_{i}", "type": "function",
              "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
             for i, c in enumerate(turn.get("calls", []))]
    message = {"role": "assistant", "content": turn.get("text")}
    if calls:
        message["tool_calls"] = calls
    return {"id": f"chatcmpl-{n}", "object": "chat.completion", "model": "scripted",
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}


def responses(turn, n):
    output = [{"type": "function_call", "id": f"fc_{n}_{i}", "call_id": f"call_{n}_{i}",
               "name": c["name"], "arguments": json.dumps(c["arguments"])}
              for i, c in enumerate(turn.get("calls", []))]
    if turn.get("text"):
        output.append({"type": "message", "id": f"msg_{n}", "role": "assistant",
                       "content": [{"type": "output_text", "text": turn["text"]}]})
    return {"id": f"resp_{n}", "object": "response", "status": "completed", "output": output,
            "usage": {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}}


def anthropic(turn, n):
    content = []
    if turn.get("text"):
        content.append({"type": "text", "text": turn["text"]})
    content += [{"type": "tool_use", "id": f"toolu_{n}_{i}", "name": c["name"], "input": c["arguments"]}
                for i, c in enumerate(turn.get("calls", []))]
    return {"id": f"msg_{n}", "type": "message", "role": "assistant", "model": "scripted",
            "content": content, "stop_reason": "tool_use" if turn.get("calls") else "end_turn",
            "usage": {"input_tokens": 100, "output_tokens": 20}}


class Handler(BaseHTTPRequestHandler):
    count = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        n = Handler.count
        Handler.count += 1
        with open(RECORD, "a") as f:
            f.write(json.dumps({"path": self.path, "authorization": self.headers.get("authorization"),
                                "x-api-key": self.headers.get("x-api-key"), "body": body}) + "\n")
        turn = SCRIPT[n] if n < len(SCRIPT) else {"text": "done"}
        if self.path.endswith("/chat/completions"):
            answer = chat(turn, n)
        elif self.path.endswith("/responses"):
            answer = responses(turn, n)
        elif self.path.endswith("/messages"):
            answer = anthropic(turn, n)
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
