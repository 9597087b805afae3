#!/usr/bin/env python3
"""One DNS query over UDP to a server on 127.0.0.1, for deploy/dev/dns.sh.

    dns_query.py PORT NAME TYPE [TIMEOUT_SECONDS]

Prints the answer's RCODE name and its answer count (`NOERROR 1`), or `TIMEOUT`.
Exit 0 when an answer came (whatever its RCODE), 1 on a timeout. Standard library only.
"""

import random
import socket
import struct
import sys

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def query(port: int, name: str, qtype: str, timeout: float) -> str:
    txid = random.randint(0, 0xFFFF)
    header = struct.pack(">HHHHHH", txid, 0x0100, 1, 0, 0, 0)  # RD, one question
    labels = [p.encode() for p in name.rstrip(".").split(".") if p]
    question = b"".join(bytes([len(p)]) + p for p in labels) + b"\0"
    question += struct.pack(">HH", TYPES[qtype.upper()], 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(header + question, ("127.0.0.1", port))
        while True:
            try:
                data, _ = s.recvfrom(4096)
            except (socket.timeout, ConnectionRefusedError):
                return "TIMEOUT"
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == txid:
                break
    flags, _, answers = struct.unpack(">HHH", data[2:8])
    rcode = flags & 0xF
    return f"{RCODES.get(rcode, rcode)} {answers}"


def main() -> int:
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    timeout = float(sys.argv[4]) if len(sys.argv) == 5 else 2.0
    answer = query(int(sys.argv[1]), sys.argv[2], sys.argv[3], timeout)
    print(answer)
    return 1 if answer == "TIMEOUT" else 0


if __name__ == "__main__":
    sys.exit(main())
