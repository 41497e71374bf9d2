"""Wire captures (pcap, pcapng) read and matched to traces: ``wire.md``, ``wire.order``, ``wire_to_wire``.

A capture appliance (or tcpdump) stamps every frame as it passes. STAC-T1 measures tick-to-trade
there: from the first byte of the market-data message (SOM) to the first byte of the order frame
it caused (SOF). This package turns a capture into those two points per trace:

``wire.md``     MoldUDP64 packet on a market-data UDP port: every message it carries is the trace
                whose id is its sequence number (packet's first sequence + index of the message in
                the packet), the key the bundled feed handler gives its traces. The stamp is the
                packet's (a capture stamps frames, not the bytes inside them).
``wire.order``  FIX NewOrderSingle (35=D) sent to an order port, after TCP reassembly per direction
                (out-of-order segments wait for the hole to fill, retransmitted bytes are taken
                once, frames split across segments or several in one are framed by BodyLength).
                The stamp is that of the segment holding the frame's first byte. The trace id is
                read from the ClOrdID (tag 11, or the tag a venue uses instead) with a regex whose
                first group is the id and whose optional second group is the leg (0 without it);
                the bundled traders' ClOrdIDs are ``TS<trace id>.<leg>-<n>``.

Parsing: the file is walked once in Python for record boundaries (pcap record headers, pcapng
blocks), then link, IP, UDP and TCP headers of all packets are decoded at once with numpy over the
fixed-layout header bytes (gathers on the whole buffer). Only order-port TCP segments go through
Python one by one (stream reassembly needs state). dpkt builds one Python object per layer per
packet, several times slower than the record walk alone (``benchmarks/bench_wire.py`` measures it).

Bad input never raises past ``read_capture``/``match``: an unreadable file is a ``WireError`` (one
line), everything else (a pcapng block with a wrong length, a truncated last record, packets cut
by the snap length, unknown link types, malformed Mold or FIX) is a counter in ``counters`` and,
where it stops reading, a line in ``warnings``.

Modules, in the order a packet meets them:

``files``       a capture file opened by its magic, read whole or in chunks (``read_chunks``)
``pcap``        pcap records -> ``Capture`` (``capture``: the chunk type and ``WireError``)
``pcapng``      pcapng blocks, sections and interfaces -> ``Capture``
``headers``     link, IP, UDP and TCP headers of all packets at once
``fragments``   IP datagrams reassembled from their fragments
``mold``        MoldUDP64 market data on UDP
``tcp``         one TCP direction reassembled, FIX frames cut from it
``fix``         FIX frame checks (a copy of pipeline/fix.py's) and the ClOrdID -> trace id mapping
``websocket``   WebSocket market data over TCP, text messages numbered as the feed handler does
``marker``      the end marker ``profile --capture`` writes
``endpoints``   ``--md``/``--orders``: a transport, a port, a protocol
``matcher``     ``WireMatcher``: chunks in, both points per trace and their join out (``traces``)
``session``     a session directory from a match

The names callers use are importable from here; the protocols' constants stay in their modules.
"""

from .capture import MAX_STAMP_NS, Capture, WireError
from .endpoints import MD_PROTOCOLS, ORDER_PROTOCOLS, Endpoint
from .files import CHUNK_BYTES, capture_stream, read_capture, read_chunks
from .fix import DEFAULT_CLORDID_REGEX, DEFAULT_CLORDID_TAG, OrderMapping, fix_field, fix_refusal
from .fragments import IpReassembly
from .headers import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    Headers,
    decode_headers,
)
from .marker import END_MARKER_MAGIC, end_markers
from .matcher import REFUSAL_COUNTERS, WireMatch, WireMatcher, WireStep, match, match_file, refusals
from .mold import mold_messages
from .pcap import PCAP_MAGIC_NS, PCAP_MAGIC_US, PcapStream
from .pcapng import PcapngStream
from .session import WIRE_STAGE, WIRE_TAGS, interval_histograms, write_session
from .tcp import TcpStream
from .websocket import WsConnection

__all__ = [
    "Capture",
    "capture_stream",
    "CHUNK_BYTES",
    "decode_headers",
    "DEFAULT_CLORDID_REGEX",
    "DEFAULT_CLORDID_TAG",
    "END_MARKER_MAGIC",
    "end_markers",
    "Endpoint",
    "fix_field",
    "fix_refusal",
    "Headers",
    "interval_histograms",
    "IpReassembly",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "match",
    "match_file",
    "MAX_STAMP_NS",
    "MD_PROTOCOLS",
    "mold_messages",
    "ORDER_PROTOCOLS",
    "OrderMapping",
    "PCAP_MAGIC_NS",
    "PCAP_MAGIC_US",
    "PcapngStream",
    "PcapStream",
    "read_capture",
    "read_chunks",
    "REFUSAL_COUNTERS",
    "refusals",
    "TcpStream",
    "WIRE_STAGE",
    "WIRE_TAGS",
    "WireError",
    "WireMatch",
    "WireMatcher",
    "WireStep",
    "write_session",
    "WsConnection",
]
