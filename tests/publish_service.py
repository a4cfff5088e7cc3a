"""The service inside the tunnel for tests/publish.rs: TCP and UDP echo on
127.0.0.1:PORT and [::1]:PORT (when the namespace has IPv6).

TCP: echoes every byte; on end of stream it half-closes its side too (after the echo).
A connection whose first bytes are RESET is reset (SO_LINGER 0). UDP: every datagram
goes back to its sender unchanged. Prints "ready" once listening.
"""
import asyncio
import socket
import struct
import sys


async def handle(reader, writer):
    first = True
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if first and data.startswith(b"RESET"):
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                writer.transport.abort()
                return
            first = False
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
        # Wait for the peer to close its side in turn.
        await reader.read()
    except OSError:
        pass
    finally:
        writer.close()


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def main():
    port = int(sys.argv[1])
    loop = asyncio.get_running_loop()
    hosts = ["127.0.0.1"]
    if socket.has_ipv6:
        try:
            s = socket.socket(socket.AF_INET6)
            s.bind(("::1", 0))
            s.close()
            hosts.append("::1")
        except OSError:
            pass
    for host in hosts:
        await asyncio.start_server(handle, host, port, backlog=1024)
        await loop.create_datagram_endpoint(Echo, local_addr=(host, port))
    print("ready", " ".join(hosts), flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
