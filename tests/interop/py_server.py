#!/usr/bin/env python3
"""Echo server on Python `websockets`, for tests/interop.rs.

Usage: py_server.py [PORT]   (default 0: a free port)

Listens on 127.0.0.1, prints the bound port alone on the first stdout line,
then echoes every message unchanged (text as text, binary as binary). The
text message `close:<code>` is not echoed: the server closes that connection
with that close code instead.
"""
import asyncio
import sys

try:  # websockets >= 13: the new asyncio implementation
    from websockets.asyncio.server import serve
except ImportError:  # websockets 12
    from websockets.server import serve


async def handler(ws, *_path):
    async for msg in ws:
        if isinstance(msg, str) and msg.startswith("close:"):
            await ws.close(code=int(msg[len("close:"):]), reason="asked to")
            return
        await ws.send(msg)


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    # The client's heartbeat pings are answered automatically; no pings of
    # our own, so nothing but the test decides when a connection ends.
    async with serve(handler, "127.0.0.1", port, ping_interval=None) as server:
        bound = server.sockets[0].getsockname()[1]
        print(bound, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
