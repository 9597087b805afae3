#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs, from sample-reports/ (python3 stdlib only).

    make-seeds.py SAMPLE_REPORTS_DIR OUT_DIR

OUT_DIR/report     every XML report of the fixtures (loose, and taken out of their gzip, zip
                   and mail containers)
OUT_DIR/container  every .xml/.gz/.zip fixture, and zips in every compression method the
                   reader decodes (stored, deflate, deflate64, bzip2, LZMA, zstd, XZ),
                   gzip with several members, gzip inside zip, a zip with a non-XML entry
OUT_DIR/message    every .eml fixture, each message of the mbox fixture, and made-up mails:
                   a forwarded report (message/rfc822), nested multiparts,
                   quoted-printable XML, base64 without a Content-Transfer-Encoding

The output is deterministic and rewritten on every run (the directory is replaced).
Seeds over 64 KiB (libFuzzer's -max_len in run.sh) are left out.
"""

import base64
import email
import email.policy
import gzip
import io
import lzma
import shutil
import struct
import sys
import zipfile
import zlib
from pathlib import Path

MAX_LEN = 64 * 1024
FIXED_TIME = (2024, 6, 1, 0, 0, 0)


def fixtures(root):
    skip = (".md", ".py", ".tsv", ".jsonl", ".toml")
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")
        and not p.name.endswith(skip)
    )


def gzip_bytes(data):
    return gzip.compress(data, mtime=0)


def xml_of(data):
    """The XML inside a fixture's bytes (gzip, zip), or None."""
    if data.startswith(b"\x1f\x8b"):
        try:
            return [gzip.decompress(data)]
        except (OSError, EOFError):
            return []
    if data.startswith(b"PK\x03\x04"):
        out = []
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for name in z.namelist():
                out.extend(xml_of(z.read(name)))
        return out
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return [data]
    return []


def attachments_of(message_bytes):
    msg = email.message_from_bytes(message_bytes, policy=email.policy.compat32)
    for part in msg.walk():
        if part.is_multipart():
            continue
        body = part.get_payload(decode=True) or b""
        yield body


def split_mbox(data):
    messages, current = [], None
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From "):
            if current is not None:
                messages.append(b"".join(current))
            current = []
        elif current is not None:
            current.append(line[1:] if line.startswith(b">From ") else line)
    if current:
        messages.append(b"".join(current))
    return messages


def raw_zip(entries):
    """A zip of (name, method, compressed, uncompressed) entries, written by hand so that
    any method number can be used."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, method, packed, plain in entries:
        name = name.encode()
        crc = zlib.crc32(plain)
        offset = out.tell()
        # version 63 (covers LZMA/XZ/zstd), flags 0, DOS time/date fixed.
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 63, 0, method, 0, 0x58C1,
                              crc, len(packed), len(plain), len(name), 0))
        out.write(name + packed)
        central.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 63, 63, 0, method,
                                  0, 0x58C1, crc, len(packed), len(plain), len(name), 0, 0,
                                  0, 0, 0, offset))
        central.write(name)
    start = out.tell()
    out.write(central.getvalue())
    out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                          len(central.getvalue()), start, 0))
    return out.getvalue()


def zstd_raw_frame(data):
    """A zstd frame of raw (stored) blocks and one RLE block: valid zstd, made without a
    zstd library. Window 64 KiB."""
    out = bytearray(b"\x28\xb5\x2f\xfd")
    out += bytes([0x00, 6 << 3])  # no content size, no checksum; window log 16
    chunks = [data[i:i + 16384] for i in range(0, len(data), 16384)] or [b""]
    for chunk in chunks:
        header = (len(chunk) << 3) | (0 << 1)  # raw block
        out += struct.pack("<I", header)[:3] + chunk
    header = (64 << 3) | (1 << 1) | 1  # last block: RLE, 64 spaces
    out += struct.pack("<I", header)[:3] + b" "
    return bytes(out), data + b" " * 64


def zips(xml):
    """One zip per compression method, of the report `xml`."""
    out = {}
    for method, label in [(zipfile.ZIP_STORED, "stored"), (zipfile.ZIP_DEFLATED, "deflate"),
                          (zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "lzma")]:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            info = zipfile.ZipInfo("report.xml", FIXED_TIME)
            info.compress_type = method
            z.writestr(info, xml)
        out[f"zip-{label}.zip"] = buf.getvalue()
    # Deflate64 (9): a deflate stream with no back-references is valid deflate64 too.
    huffman = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_HUFFMAN_ONLY)
    packed = huffman.compress(xml) + huffman.flush()
    out["zip-deflate64.zip"] = raw_zip([("report.xml", 9, packed, xml)])
    packed, plain = zstd_raw_frame(xml)
    out["zip-zstd.zip"] = raw_zip([("report.xml", 93, packed, plain)])
    out["zip-xz.zip"] = raw_zip([("report.xml", 95, lzma.compress(xml, lzma.FORMAT_XZ), xml)])
    gz = gzip_bytes(xml)
    out["zip-gzip-entry.zip"] = raw_zip([
        ("README.txt", 0, b"see the attached report\n", b"see the attached report\n"),
        ("report.xml.gz", 0, gz, gz),
    ])
    half = len(xml) // 2
    out["gzip-two-members.gz"] = gzip_bytes(xml[:half]) + gzip_bytes(xml[half:])
    return out


def mail(parts, boundary="b1", top=""):
    m = ("From: dmarc@example.net\r\nTo: rua@example.com\r\nSubject: Report\r\n"
         f"{top}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n")
    for headers, body in parts:
        m += f"--{boundary}\r\n{headers}\r\n\r\n{body}\r\n"
    m += f"--{boundary}--\r\n"
    return m.encode()


def b64(data):
    text = base64.b64encode(data).decode()
    return "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))


def messages(xml):
    gz_part = ("Content-Type: application/gzip; name=\"r.xml.gz\"\r\n"
               "Content-Transfer-Encoding: base64", b64(gzip_bytes(xml)))
    plain = mail([("Content-Type: text/plain", "A DMARC report."), gz_part])
    inner = plain.replace(b"b1", b"inner")
    out = {
        "forwarded.eml": mail([("Content-Type: text/plain", "Forwarded."),
                               ("Content-Type: message/rfc822", inner.decode())]),
        "nested.eml": mail([("Content-Type: multipart/alternative; boundary=\"alt\"",
                             "--alt\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
                             "--alt\r\nContent-Type: text/html\r\n\r\n<html>hi</html>\r\n"
                             "--alt--"), gz_part]),
        "quoted-printable.eml": (
            b"From: a@example.net\r\nSubject: r\r\nContent-Type: text/xml\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            + xml.replace(b"=", b"=3D").replace(b"\n", b"=\r\n")),
        "unlabelled-base64.eml": mail([("Content-Type: application/gzip",
                                        b64(gzip_bytes(xml)))]),
        "rfc2231-zip.eml": mail([(
            "Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment;\r\n filename*0*=utf-8''a%21example.com;\r\n"
            " filename*1*=%21r.zip", b64(zips(xml)["zip-deflate.zip"]))]),
    }
    return out


def main():
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    seeds = {"report": {}, "container": {}, "message": {}}
    reports = []
    for path in fixtures(root):
        data = path.read_bytes()
        name = str(path.relative_to(root)).replace("/", "_")
        if xml_of(data) or data.startswith((b"\x1f\x8b", b"PK\x03\x04")) or path.suffix == ".xml":
            seeds["container"][name] = data
            reports.extend(xml_of(data))
        elif data.startswith(b"From "):
            for i, m in enumerate(split_mbox(data)):
                seeds["message"][f"{name}-{i}.eml"] = m
                for body in attachments_of(m):
                    reports.extend(xml_of(body))
        else:
            seeds["message"][name] = data
            for body in attachments_of(data):
                reports.extend(xml_of(body))
    for i, xml in enumerate(dict.fromkeys(reports)):
        seeds["report"][f"report-{i:02}.xml"] = xml
    small = min((x for x in reports if b"<record" in x), key=len)
    seeds["container"].update(zips(small))
    seeds["message"].update(messages(small))

    if out.exists():
        shutil.rmtree(out)
    for target, files in seeds.items():
        (out / target).mkdir(parents=True)
        for name, data in sorted(files.items()):
            if len(data) <= MAX_LEN:
                (out / target / name).write_bytes(data)


if __name__ == "__main__":
    main()
