"""What to match: ``--md``/``--orders`` endpoints, a transport, a port and the protocol on it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .capture import WireError

MD_PROTOCOLS = {"udp": "mold", "tcp": "ws"}  # --md: MoldUDP64 over UDP, WebSocket (ws://) over TCP
ORDER_PROTOCOLS = {"tcp": "fix"}  # --orders: FIX over TCP


@dataclass
class Endpoint:
    """``udp:PORT[:mold]``, ``tcp:PORT:ws`` or ``tcp:PORT[:fix]``: a transport, a port, a protocol."""

    transport: str
    port: int
    protocol: str

    @classmethod
    def parse(cls, text: str, protocols: dict[str, str]) -> Endpoint:
        """``protocols``: transport -> the protocol matched on it; the first transport is a bare
        port's, a missing protocol is the transport's."""
        parts = text.split(":")
        if len(parts) == 1:  # a bare port
            parts = [next(iter(protocols)), *parts]
        forms = " or ".join(f"{t}:PORT[:{p}]" for t, p in protocols.items())
        if (
            parts[0] not in protocols
            or len(parts) > 3
            or re.fullmatch(r"[0-9]{1,5}", parts[1]) is None  # str.isdigit takes '²', int() does not
            or not 0 < int(parts[1]) < 65536
        ):
            raise WireError(f"{text!r} is not an endpoint (expected {forms} with PORT 1-65535)")
        protocol = protocols[parts[0]]
        if len(parts) == 3 and parts[2] != protocol:
            raise WireError(
                f"{text!r}: protocol {parts[2]!r} is not one tickscope matches on {parts[0]} ({protocol})"
            )
        return cls(parts[0], int(parts[1]), protocol)
