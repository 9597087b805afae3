#!/usr/bin/env python3
"""Writes a small MaxMind-format (MMDB) database of AS numbers and countries, for the
tests and the demo: `make_mmdb.py NETWORKS.tsv OUT.mmdb`.

NETWORKS.tsv: one network per line, tab-separated: `network/prefix  asn  as_org
country` (an empty field is left out; `#` starts a comment). Each network's record has
the fields of GeoLite2-ASN and GeoLite2-Country together (`autonomous_system_number`,
`autonomous_system_organization`, `country.iso_code`), so one file serves as both
`[enrich] asn_database` and `country_database`. IPv4 networks are stored where MMDB
readers look for them in an IPv6 tree (::a.b.c.d). Networks must not overlap.

The format (MaxMind DB 2.0): a binary search tree over the address bits (24-bit records),
16 zero bytes, the data section (maps, strings, unsigned integers), then the metadata map
after the marker b"\\xab\\xcd\\xefMaxMind.com".
"""

import ipaddress
import struct
import sys
import time

# Data section type numbers (MaxMind DB 2.0).
UTF8, UINT16, UINT32, MAP = 2, 5, 6, 7
UINT64, ARRAY = 9, 11
METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


def control(type_number: int, size: int) -> bytes:
    """The control byte(s) of a value of this type and size."""
    extended = type_number > 7
    first = 0 if extended else type_number << 5
    if size < 29:
        head, tail = bytes([first | size]), b""
    elif size < 29 + 256:
        head, tail = bytes([first | 29]), bytes([size - 29])
    elif size < 285 + 65536:
        head, tail = bytes([first | 30]), struct.pack(">H", size - 285)
    else:
        head, tail = bytes([first | 31]), struct.pack(">I", size - 65821)[1:]
    return head + (bytes([type_number - 7]) if extended else b"") + tail


def encode(value, unsigned_type: int = UINT32) -> bytes:
    """One value: str, int (as `unsigned_type`), list, or dict (str keys)."""
    if isinstance(value, str):
        raw = value.encode()
        return control(UTF8, len(raw)) + raw
    if isinstance(value, int):
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
        return control(unsigned_type, len(raw)) + raw
    if isinstance(value, list):
        return control(ARRAY, len(value)) + b"".join(encode(v) for v in value)
    if isinstance(value, dict):
        out = control(MAP, len(value))
        for key, item in value.items():
            kind = item[1] if isinstance(item, tuple) else UINT32
            item = item[0] if isinstance(item, tuple) else item
            out += encode(key) + encode(item, kind)
        return out
    raise TypeError(f"cannot encode {value!r}")


def read_networks(path: str):
    """(network, record) pairs of the TSV file."""
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.split("#", 1)[0].rstrip("\n")
            if not line.strip():
                continue
            fields = (line.split("\t") + ["", "", ""])[:4]
            network, asn, org, country = (x.strip() for x in fields)
            try:
                net = ipaddress.ip_network(network, strict=True)
            except ValueError as e:
                sys.exit(f"{path}:{number}: {e}")
            record = {}
            if asn:
                record["autonomous_system_number"] = int(asn)
            if org:
                record["autonomous_system_organization"] = org
            if country:
                record["country"] = {"iso_code": country}
            out.append((net, record))
    return out


def build(networks) -> bytes:
    """The database bytes of these networks."""
    # The tree: nodes of two records; a record is ("node", i), ("data", offset) or None.
    nodes = [[None, None]]
    data = b""
    for net, record in networks:
        if net.version == 4:
            bits, length = int(net.network_address), net.prefixlen + 96
        else:
            bits, length = int(net.network_address), net.prefixlen
        offset = len(data)
        data += encode(record)
        node = 0
        for depth in range(length):
            bit = (bits >> (127 - depth)) & 1
            if depth == length - 1:
                if nodes[node][bit] is not None:
                    sys.exit(f"network {net} overlaps another")
                nodes[node][bit] = ("data", offset)
                break
            child = nodes[node][bit]
            if child is None:
                nodes.append([None, None])
                child = ("node", len(nodes) - 1)
                nodes[node][bit] = child
            elif child[0] != "node":
                sys.exit(f"network {net} overlaps another")
            node = child[1]
    count = len(nodes)

    def value(rec) -> int:
        if rec is None:
            return count
        kind, n = rec
        return n if kind == "node" else count + 16 + n

    tree = b"".join(
        value(left).to_bytes(3, "big") + value(right).to_bytes(3, "big")
        for left, right in nodes
    )
    metadata = {
        "binary_format_major_version": (2, UINT16),
        "binary_format_minor_version": (0, UINT16),
        "build_epoch": (int(time.time()), UINT64),
        "database_type": "dmarc-ingest-test-ASN-Country",
        "description": {"en": "dmarc-ingest test networks (documentation ranges)"},
        "ip_version": (6, UINT16),
        "languages": ["en"],
        "node_count": (count, UINT32),
        "record_size": (24, UINT16),
    }
    return tree + b"\x00" * 16 + data + METADATA_MARKER + encode(metadata)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    database = build(read_networks(sys.argv[1]))
    with open(sys.argv[2], "wb") as f:
        f.write(database)


if __name__ == "__main__":
    main()
