#!/usr/bin/env python3
"""One browser wall's worth of passthrough viewers, without a browser: a WebSocket to
`/live/{site}` per site, each read to the end and thrown away (what a browser's MSE player
costs the server is the bytes it is sent; decoding them is the browser's work, not the
server's). Standard library only, so scripts/wall-cpu.sh needs nothing installed.

    scripts/live-viewer.py HOST:PORT SITE [SITE ...]

The wall wants a login: SIMPANG_WALL_AUTH=NAME:TOKEN (a wall device) is sent as HTTP Basic.
Runs until killed; on SIGTERM prints one line per site: messages and bytes received.
"""

import asyncio
import base64
import os
import signal
import struct
import sys


async def viewer(host, port, site, stats):
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    auth = os.environ.get("SIMPANG_WALL_AUTH", "")
    auth = f"Authorization: Basic {base64.b64encode(auth.encode()).decode()}\r\n" if auth else ""
    writer.write(
        (
            f"GET /live/{site} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status:
        raise RuntimeError(f"/live/{site}: {status.decode(errors='replace')}")
    while True:
        b0, b1 = await reader.readexactly(2)
        opcode, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        if b1 & 0x80:  # a server never masks; read the key anyway to stay in step
            await reader.readexactly(4)
        payload = await reader.readexactly(n)
        if opcode == 0x8:  # close
            raise RuntimeError(f"/live/{site}: closed by the server: {payload[2:]!r}")
        if opcode == 0x9:  # ping: answer with a masked pong of the same payload
            mask = os.urandom(4)
            body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            writer.write(bytes([0x8A, 0x80 | len(payload)]) + mask + body)
            await writer.drain()
        s = stats[site]
        s[0] += 1
        s[1] += n


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    sites = sys.argv[2:]
    if not sites:
        sys.exit("usage: live-viewer.py HOST:PORT SITE [SITE ...]")
    stats = {s: [0, 0] for s in sites}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    tasks = [asyncio.create_task(viewer(host, int(port), s, stats)) for s in sites]
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in done:
        if t is not waiter and t.exception():
            print(f"live-viewer: {t.exception()}", file=sys.stderr)
    for s, (msgs, nbytes) in stats.items():
        print(f"{s} {msgs} messages {nbytes} bytes")
    sys.exit(0 if waiter in done else 1)


asyncio.run(main())
