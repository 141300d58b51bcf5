"""aws-chunked request bodies: what AWS SDKs send when they stream an upload.

A body whose ``X-Amz-Content-SHA256`` is one of the ``STREAMING-*`` values arrives as
chunks, ``<hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n``, ending with a chunk of size
0 and, for the ``-TRAILER`` forms, trailing headers (``x-amz-checksum-crc32:<b64>``, and
``x-amz-trailer-signature`` when the chunks are signed). boto3 sends
``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` for uploads over HTTPS; the Java, Go and .NET SDKs sign
every chunk (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``).

:class:`AwsChunkedDecoder` is fed the body as it arrives and hands back the object's bytes,
checking each chunk's signature (:class:`~.sigv4.ChunkChain`) as its data completes, the
framing, the decoded length and the trailer's signature. The caller writes the bytes to a
staging file and keeps nothing when any check fails. Kept free of I/O so it can be fed in
any pieces.
"""

from __future__ import annotations

import hashlib
import re
from enum import Enum, auto

from loopworks.server.aws.protocols import AwsError
from loopworks.server.aws.sigv4 import ChunkChain, SignatureError

__all__ = ["STREAMING_FORMS", "AwsChunkedDecoder"]

#: The payload hashes of aws-chunked bodies, and whether each carries trailing headers.
STREAMING_FORMS = {
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": False,
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": True,
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER": True,
}
_MAX_LINE = 4096  # a chunk header or trailer line; anything longer is not aws-chunked
_MAX_TRAILERS = 16
_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIGNATURE = re.compile(rb"chunk-signature=([0-9a-f]{64})")


class _State(Enum):
    HEADER = auto()
    DATA = auto()
    DATA_END = auto()
    TRAILER = auto()
    DONE = auto()


def _malformed(message: str) -> AwsError:
    return AwsError("InvalidRequest", f"The aws-chunked body is malformed: {message}",
                    status=400)


class AwsChunkedDecoder:
    """Decode one aws-chunked body, checking it as it goes.

    Args:
        chain: The signatures to check chunks against (signed forms), or None (unsigned).
        trailer: Whether trailing headers follow the last chunk.
        decoded_length: ``x-amz-decoded-content-length``, when sent: the object's size.
    """

    def __init__(self, chain: ChunkChain | None, *, trailer: bool,
                 decoded_length: int | None) -> None:
        self.chain = chain
        self.trailer = trailer
        self.decoded_length = decoded_length
        #: Bytes of object data decoded so far.
        self.decoded = 0
        #: The trailing headers, lower-case names (signature line excluded).
        self.trailers: dict[str, str] = {}
        self._state = _State.HEADER
        self._pending = b""
        self._remaining = 0
        self._signature = ""
        self._hash = hashlib.sha256()
        self._trailer_lines: list[bytes] = []

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next piece of the body; returns the object bytes it completes.

        Raises:
            AwsError: The framing is wrong, or a chunk's or the trailer's signature.
        """
        buf = self._pending + data if self._pending else data
        self._pending = b""
        out: list[bytes] = []
        pos, end = 0, len(buf)
        while pos < end:
            if self._state is _State.DATA:
                take = min(self._remaining, end - pos)
                piece = buf[pos:pos + take]
                if self.chain is not None:
                    self._hash.update(piece)
                out.append(piece)
                pos += take
                self._remaining -= take
                self.decoded += take
                if self._remaining == 0:
                    self._state = _State.DATA_END
            elif self._state is _State.DATA_END:
                if end - pos < 2:
                    self._pending = buf[pos:]
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise _malformed(f"a chunk's data is not followed by CRLF at byte "
                                     f"{self.decoded} of the object")
                pos += 2
                self._chunk_done()
                self._state = _State.HEADER
            elif self._state is _State.DONE:
                raise _malformed("bytes follow the end of the body")
            else:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    if end - pos > _MAX_LINE:
                        raise _malformed("a chunk header or trailer line is too long")
                    self._pending = buf[pos:]
                    break
                line = buf[pos:line_end]
                pos = line_end + 2
                if self._state is _State.HEADER:
                    self._header(line)
                else:
                    self._trailer_line(line)
        return out

    def close(self) -> None:
        """The body has ended: it must have ended where the framing says.

        Raises:
            AwsError: IncompleteBody when it stopped early, or a decoded length that is not
                ``x-amz-decoded-content-length``.
        """
        if self._state is not _State.DONE:
            raise AwsError("IncompleteBody", "You did not provide the number of bytes "
                           "specified by the aws-chunked framing.", status=400)
        if self.decoded_length is not None and self.decoded != self.decoded_length:
            raise AwsError("IncompleteBody", f"The body decodes to {self.decoded} bytes, not "
                           f"the x-amz-decoded-content-length of {self.decoded_length}.",
                           status=400)

    def _header(self, line: bytes) -> None:
        size_text, _, extension = line.partition(b";")
        if not _SIZE.fullmatch(size_text):
            raise _malformed(f"{line[:40]!r} is not a chunk size")
        size = int(size_text, 16)
        if self.chain is not None:
            found = _SIGNATURE.fullmatch(extension)
            if found is None:
                raise _malformed("a chunk has no chunk-signature")
            self._signature = found.group(1).decode()
        if self.decoded_length is not None and self.decoded + size > self.decoded_length:
            raise AwsError("IncompleteBody", "The chunks hold more than the "
                           f"x-amz-decoded-content-length of {self.decoded_length} bytes.",
                           status=400)
        if size:
            self._remaining = size
            self._state = _State.DATA
            return
        self._chunk_done()  # the last chunk: its signature signs no data
        # Trailing headers (when announced), then the blank line that ends the body.
        self._state = _State.TRAILER

    def _chunk_done(self) -> None:
        if self.chain is None:
            return
        try:
            self.chain.check_chunk(self._hash.hexdigest(), self._signature)
        except SignatureError as exc:
            raise AwsError("SignatureDoesNotMatch", exc.message, status=403) from None
        self._hash = hashlib.sha256()

    def _trailer_line(self, line: bytes) -> None:
        if not line:  # the blank line that ends the body
            if self.chain is not None and self.trailer:
                raise _malformed("the trailer has no x-amz-trailer-signature")
            self._state = _State.DONE
            return
        if not self.trailer:
            raise _malformed("trailing headers were not announced (X-Amz-Content-SHA256)")
        name, colon, value = line.partition(b":")
        if not colon:
            raise _malformed(f"{line[:40]!r} is not a trailing header")
        key = name.strip().lower().decode("latin-1")
        if key == "x-amz-trailer-signature":
            if self.chain is None:
                raise _malformed("an unsigned body's trailer carries a signature")
            canonical = b"".join(n.strip().lower() + b":" + v.strip() + b"\n"
                                 for n, _, v in (t.partition(b":") for t in self._trailer_lines))
            try:
                self.chain.check_trailer(canonical, value.strip().decode("latin-1"))
            except SignatureError as exc:
                raise AwsError("SignatureDoesNotMatch", exc.message, status=403) from None
            self.chain = None  # checked: the blank line may follow
            self.trailer = False
            return
        if len(self._trailer_lines) >= _MAX_TRAILERS:
            raise _malformed("too many trailing headers")
        self._trailer_lines.append(line)
        self.trailers[key] = value.strip().decode("latin-1")
