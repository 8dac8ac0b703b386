"""Loaded by every Python process started with this folder on PYTHONPATH: records and refuses network use beyond loopback.

Each attempt to resolve or connect to a host other than 127.0.0.1 / ::1 / localhost is appended to the file named by
NETGUARD_LOG (one line: pid, event, address) and fails as an unreachable network would.
"""

from __future__ import annotations

import os
import socket
import sys

LOOPBACK = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "", None}
LOG = os.environ.get("NETGUARD_LOG")


def _record(event: str, address: object) -> None:
    with open(LOG, "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\t{event}\t{address!r}\t{' '.join(sys.argv)[:200]}\n")


def _host(address: object):
    if isinstance(address, tuple) and address:
        return address[0]
    return None  # a unix socket path or a file descriptor


def _guard(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo" or event == "socket.gethostbyname":
        host = args[0]
        host = host.decode() if isinstance(host, bytes) else host
        if host not in LOOPBACK:
            _record(event, host)
            raise socket.gaierror(socket.EAI_NONAME, f"netguard: lookup of {host} refused")
    elif event in ("socket.connect", "socket.sendto"):
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6) and _host(address) not in LOOPBACK:
            _record(event, address)
            raise OSError(101, f"netguard: connection to {address!r} refused")


if LOG:
    sys.addaudithook(_guard)
