"""A loopback OpenAI-compatible server that answers instantly, for runner benchmarks.

    .venv/bin/python bench/fastserver.py [PORT]     # prints its base URL, serves until SIGTERM

asyncio Protocol, HTTP/1.1 keep-alive, one process: every POST gets the same canned
`chat.completion` (finish_reason "stop", with usage) after its body has arrived; `GET /count`
returns how many POSTs it answered. The stdlib ThreadingHTTPServer costs a thread and a Python
HTTP parser per request and would be the bottleneck itself; bench_runner.py measures this one
alone with a raw-socket client to show it is not.
"""
import asyncio
import json
import signal
import sys

ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1735689600, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}).encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"x-request-id: bench\r\n\r\n" % len(ANSWER)) + ANSWER
answered = 0


class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        global answered
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").lower()
            length = 0
            for line in head.split("\r\n")[1:]:
                if line.startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            if head.startswith("get /count"):
                text = str(answered).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
            else:
                answered += 1
                self.transport.write(RESPONSE)
            if "connection: close" in head:
                self.transport.close()
                return


async def serve(port: int):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", port, backlog=512)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", flush=True)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    await stop
    server.close()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
