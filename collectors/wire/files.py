"""Capture files opened by their magic and read whole or in chunks of whole packets."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

from .capture import Capture, WireError, add_count
from .pcap import PCAP_MAGIC_NS, PCAP_MAGIC_US, PcapStream
from .pcapng import PCAPNG_SHB, PcapngStream

# What ``tickscope wire`` reads at a time. 1 M packets (126 MB pcap): 4 MiB chunks peak at 133 MB RSS
# in 1.55 s, 32 MiB at 330 MB in 2.06 s (smaller chunks stay in cache); below 4 MiB nothing is won.
CHUNK_BYTES = 4 << 20


def capture_stream(head: bytes, path: str | Path) -> PcapStream | PcapngStream:
    """The stream that reads a file beginning with ``head`` (at least its first 4 bytes): chosen by
    the magic, and a file that is neither pcap nor pcapng is refused on those bytes alone."""
    if len(head) < 4:
        raise WireError(f"{path}: {len(head)} bytes, not a pcap or pcapng capture (too short)")
    name = Path(path).name
    if struct.unpack_from("<I", head)[0] == PCAPNG_SHB:  # the same in both byte orders
        return PcapngStream(name)
    for endian in "<>":
        if struct.unpack_from(endian + "I", head)[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            return PcapStream(name)
    raise WireError(f"{path}: not a pcap or pcapng capture, magic {head[:4].hex()} "
                    "(write captures with tcpdump -w or convert with editcap -F pcap)")  # fmt: skip


IDENTITY_HEAD = 1 << 20  # a capture's identity: sha256 of its first MiB and its size (see capture_identity)


def read_chunks(
    path: str | Path, chunk_bytes: int = CHUNK_BYTES, identity: dict | None = None
) -> Iterator[Capture]:
    """The capture at ``path`` as ``Capture``s of whole packets, read ``chunk_bytes`` at a time: memory
    holds one chunk (and the record cut by its end), however large the file. The last one is what
    the stream's ``close`` says (a truncated last record, the interfaces seen). Reading stops at a
    record or block whose length cannot be trusted. ``identity``, when given, is filled from the
    bytes as they are read (``capture_identity``): a FIFO or a pipe cannot be read twice."""
    p = Path(path)
    digest = hashlib.sha256()
    seen = 0
    try:
        with open(p, "rb") as f:
            regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
            data = f.read(max(chunk_bytes, 4))
            stream = capture_stream(data, p)
            while data and not stream.stopped:
                if seen < IDENTITY_HEAD:
                    digest.update(data[: IDENTITY_HEAD - seen])
                seen += len(data)
                cap = stream.push(data)
                data = None  # the chunk's bytes live on in cap.data only, not twice while the next is read
                yield cap
                cap = None
                data = f.read(chunk_bytes)
            if identity is not None:
                # A regular file's size is its own (as when the identity was read apart from the
                # match); a pipe's is what came through it, up to where reading stopped.
                size = os.fstat(f.fileno()).st_size if regular else seen
                if regular and seen < min(size, IDENTITY_HEAD):  # stopped at damage inside the first MiB
                    f.seek(seen)
                    digest.update(f.read(IDENTITY_HEAD - seen))
                digest.update(size.to_bytes(8, "little"))
                identity.update({"file": p.name, "bytes": size, "sha256_head": digest.hexdigest()})
    except OSError as e:
        raise WireError(
            f"cannot read capture {p}: {e.strerror or e} (check the path and its permissions)"
        ) from None
    yield stream.close()


def read_capture(path: str | Path) -> Capture:
    """A whole capture in one ``Capture`` (tests, small files): the stream ``read_chunks`` uses, fed once."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise WireError(
            f"cannot read capture {p}: {e.strerror or e} (check the path and its permissions)"
        ) from None
    stream = capture_stream(data, p)
    cap = stream.push(data)
    end = stream.close()  # a truncated pcap header raises, a truncated last record is counted
    for k, v in end.counters.items():
        add_count(cap.counters, k, v)
    cap.warnings += end.warnings
    return cap
