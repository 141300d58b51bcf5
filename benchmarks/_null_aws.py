"""A server that answers every HTTP request at once with ``200 {}``: what boto3 can send
from one process when the server costs nothing (the ceiling of the client side). S3's
multipart calls get the few XML answers boto3's ``upload_file`` needs (bodies are read and
dropped), so an upload's ceiling can be measured too.

    python benchmarks/_null_aws.py PORT
"""

from __future__ import annotations

import asyncio
import sys

_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
           b"x-amzn-RequestId: 0\r\n\r\n{}")
_S3 = "http://s3.amazonaws.com/doc/2006-03-01/"


def _xml(body: str) -> bytes:
    data = ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: "
            + str(len(data)).encode() + b"\r\n\r\n" + data)


def _answer(request_line: bytes) -> bytes:
    method, target = request_line.split(b" ")[:2]
    if method == b"POST" and target.endswith(b"?uploads"):
        return _xml(f'<InitiateMultipartUploadResult xmlns="{_S3}"><Bucket>b</Bucket><Key>k'
                    "</Key><UploadId>null-upload</UploadId></InitiateMultipartUploadResult>")
    if method == b"POST" and b"uploadId=" in target:
        return _xml(f'<CompleteMultipartUploadResult xmlns="{_S3}"><Bucket>b</Bucket><Key>k'
                    '</Key><ETag>"0-1"</ETag></CompleteMultipartUploadResult>')
    if method == b"PUT":
        return (b'HTTP/1.1 200 OK\r\nETag: "00000000000000000000000000000000"\r\n'
                b"Content-Length: 0\r\n\r\n")
    return _ANSWER


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                if line.lower() == b"expect: 100-continue":  # botocore waits for it
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            while length:
                length -= len(await reader.read(min(length, 1 << 20)))
            writer.write(_answer(head.split(b"\r\n", 1)[0]))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def _main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1])))
