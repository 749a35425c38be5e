#!/usr/bin/env python3
"""Python `websockets` client for tests/interop.rs.

Usage: py_client.py URL

Connects, sends a text and a binary message, expects both echoed unchanged
(types preserved), closes normally, prints OK and exits 0. Any mismatch,
error or a wait over 10 s: a message on stderr and exit 1.
"""
import asyncio
import sys

try:  # websockets >= 13
    from websockets.asyncio.client import connect
except ImportError:  # websockets 12
    from websockets.client import connect

TEXT = "hello from python websockets \u00e9\u2713"
BINARY = bytes([0, 1, 2, 0xFE, 0xFF]) + b"binary"


async def run(url):
    async with connect(url, open_timeout=10) as ws:
        await ws.send(TEXT)
        await ws.send(BINARY)
        got = [await ws.recv(), await ws.recv()]
    if got != [TEXT, BINARY] or not isinstance(got[0], str) or not isinstance(got[1], bytes):
        raise AssertionError(f"expected {[TEXT, BINARY]!r}, got {got!r}")


def main():
    if len(sys.argv) != 2:
        print("usage: py_client.py URL", file=sys.stderr)
        return 2
    try:
        asyncio.run(asyncio.wait_for(run(sys.argv[1]), 10))
    except Exception as e:  # noqa: BLE001 - any failure is reported the same way
        print(f"py_client: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
