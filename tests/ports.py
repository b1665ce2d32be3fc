"""Ports for servers that tests start themselves."""

from __future__ import annotations

import random
from pathlib import Path

from coyote_sdk.dev._process import port_is_free, port_is_open


def free_ports(count: int) -> list[int]:
    """Free ports below the kernel's ephemeral range.

    Ports the kernel hands out for bind(0) are the ones it also gives other tests' outgoing
    connections, which could take a port between choosing it and the server binding it.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    chosen: list[int] = []
    while len(chosen) < count:
        port = rng.randrange(20_000, low)
        if port not in chosen and port_is_free(port) and not port_is_open(port):
            chosen.append(port)
    return chosen
