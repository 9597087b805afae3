#!/usr/bin/env python3
"""Rebuild the generated (binary or MIME) fixtures in sample-reports/.

Run from anywhere:  python3 sample-reports/make-containers.py

Hand-written sources (never touched here):
    reporters/*.xml and broken/*.xml except the generated ones listed below.

Generated, and committed so that tests need no Python:
    reporters/google.xml.gz      google.xml through `gzip -n` (GNU gzip header, mtime 0)
    reporters/mailru.xml.zip     mailru.xml as the single entry of a zip
    containers/*                 every file (reports built by report_xml() below)
    broken/truncated.xml.gz      a gzip cut in the middle of its deflate stream
    broken/yahoo-unused.xml.gz   gzip whose content is the word "unused"
    broken/no-report.eml         an out-of-office auto-reply

Output is byte-for-byte deterministic: gzip mtime 0, fixed zip timestamps,
fixed MIME boundaries, dates and Message-IDs, no randomness.  (Byte equality
assumes the same zlib / GNU gzip build; the decompressed content is always the
same.)  Every report in containers/ has its own report_id; see README.md for
the record and message counts each file must produce.
"""

import base64
import gzip
import io
import subprocess
import zipfile
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP, default
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORTERS = HERE / "reporters"
CONTAINERS = HERE / "containers"
BROKEN = HERE / "broken"

# CRLF line ends, as on the wire; base64 in 76-column lines; headers set
# with set_raw() are written exactly as given.
EML_POLICY = SMTP.clone(refold_source="none", max_line_length=78)
# mbox files on Unix use LF.
MBOX_POLICY = default.clone(refold_source="none", max_line_length=78)

ZIP_TIME = (2024, 6, 30, 0, 5, 12)


# --------------------------------------------------------------------------
# compression helpers

def gz(data: bytes, fname: bytes | None = None) -> bytes:
    """gzip with mtime 0; optionally with an FNAME field in the header."""
    if fname is None:
        return gzip.compress(data, compresslevel=9, mtime=0)
    # Python's gzip.compress never writes FNAME; build the header by hand
    # (Mimecast sends gzips that carry the original file name).
    import struct
    import zlib

    co = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = co.compress(data) + co.flush()
    header = b"\x1f\x8b\x08\x08" + struct.pack("<I", 0) + b"\x02\xff" + fname + b"\x00"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer


def gnu_gzip(path: Path) -> bytes:
    """What `gzip -k -n path` writes to path.gz (name and mtime not stored)."""
    return subprocess.run(
        ["gzip", "-n", "-c", str(path)], check=True, capture_output=True
    ).stdout


def zipped(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0  # MS-DOS, as Google's zips say
            info.external_attr = 0
            zf.writestr(info, data, compresslevel=9)
    return buf.getvalue()


# --------------------------------------------------------------------------
# report builder for container fixtures

def report_xml(org, email, report_id, domain, begin, end, records, p="none"):
    """A plain RFC 7489 report.  records: (ip, count, disposition, dkim, spf)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<feedback>",
        "  <version>1.0</version>",
        "  <report_metadata>",
        f"    <org_name>{org}</org_name>",
        f"    <email>{email}</email>",
        f"    <report_id>{report_id}</report_id>",
        "    <date_range>",
        f"      <begin>{begin}</begin>",
        f"      <end>{end}</end>",
        "    </date_range>",
        "  </report_metadata>",
        "  <policy_published>",
        f"    <domain>{domain}</domain>",
        "    <adkim>r</adkim>",
        "    <aspf>r</aspf>",
        f"    <p>{p}</p>",
        f"    <sp>{p}</sp>",
        "    <pct>100</pct>",
        "  </policy_published>",
    ]
    for ip, count, disposition, dkim, spf in records:
        out += [
            "  <record>",
            "    <row>",
            f"      <source_ip>{ip}</source_ip>",
            f"      <count>{count}</count>",
            "      <policy_evaluated>",
            f"        <disposition>{disposition}</disposition>",
            f"        <dkim>{dkim}</dkim>",
            f"        <spf>{spf}</spf>",
            "      </policy_evaluated>",
            "    </row>",
            "    <identifiers>",
            f"      <envelope_from>{domain}</envelope_from>",
            f"      <header_from>{domain}</header_from>",
            "    </identifiers>",
            "    <auth_results>",
        ]
        if dkim == "pass":
            out += [
                "      <dkim>",
                f"        <domain>{domain}</domain>",
                "        <selector>s1</selector>",
                "        <result>pass</result>",
                "      </dkim>",
            ]
        out += [
            "      <spf>",
            f"        <domain>{domain}</domain>",
            "        <scope>mfrom</scope>",
            f"        <result>{spf}</result>",
            "      </spf>",
            "    </auth_results>",
            "  </record>",
        ]
    out += ["</feedback>", ""]
    return "\n".join(out).encode("utf-8")


def fname(submitter, domain, begin, end, ext, unique=None):
    parts = [submitter, domain, str(begin), str(end)] + ([unique] if unique else [])
    return "!".join(parts) + "." + ext


# --------------------------------------------------------------------------
# MIME helpers

def new_message(frm, to, subject, date, msgid, extra=()):
    msg = EmailMessage(policy=EML_POLICY)
    for name, value in extra:
        msg.set_raw(name, value)  # may be pre-folded ("\n "); written as given
    msg["From"] = frm
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = msgid
    msg["MIME-Version"] = "1.0"
    return msg


def text_part(text):
    part = MIMEPart(policy=EML_POLICY)
    part.set_content(text, subtype="plain", charset="us-ascii", cte="7bit")
    return part


def attachment(data, maintype, subtype, filename=None, name_param=True):
    part = MIMEPart(policy=EML_POLICY)
    part.set_content(data, maintype=maintype, subtype=subtype, cte="base64")
    if filename is not None:
        if name_param:
            part.set_param("name", filename)
        part["Content-Disposition"] = f'attachment; filename="{filename}"'
    return part


def multipart(msg, parts, boundary, subtype="mixed"):
    """Turn msg into multipart/<subtype> holding parts, with a fixed boundary."""
    msg["Content-Type"] = f'multipart/{subtype}; boundary="{boundary}"'
    msg.preamble = "This is a multi-part message in MIME format."
    for part in parts:
        msg.attach(part)
    return msg


def as_bytes(msg, policy=EML_POLICY, mangle_from=False):
    from email.generator import BytesGenerator

    buf = io.BytesIO()
    BytesGenerator(buf, mangle_from_=mangle_from, policy=policy).flatten(msg)
    return buf.getvalue()


def subject(domain, submitter, report_id):
    return f"Report domain: {domain} Submitter: {submitter} Report-ID: <{report_id}>"


def write(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"{path.relative_to(HERE)}  {len(data)} bytes")


# --------------------------------------------------------------------------
# reporters/: compressed twins of hand-written reports (same report_id)

def build_reporters():
    write(REPORTERS / "google.xml.gz", gnu_gzip(REPORTERS / "google.xml"))
    mailru = (REPORTERS / "mailru.xml").read_bytes()
    write(
        REPORTERS / "mailru.xml.zip",
        zipped([("mail.ru!council-a.example!1717459200!1717545600.xml", mailru)]),
    )


# --------------------------------------------------------------------------
# containers/

def build_containers():
    # 1. gzip attachment labelled application/octet-stream, filename *.xml.gz
    rid = "mc-20240610-7731"
    xml = report_xml(
        "Example Mail Cloud", "dmarc@mailcloud.example.net", rid, "example.com",
        1717977600, 1718063999,
        [("192.0.2.11", 25, "none", "pass", "pass"),
         ("203.0.113.12", 1, "quarantine", "fail", "fail")],
        p="quarantine",
    )
    fn = fname("mailcloud.example.net", "example.com", 1717977600, 1718063999, "xml.gz")
    msg = new_message(
        "Example Mail Cloud DMARC <dmarc@mailcloud.example.net>",
        "dmarc-rua@example.com",
        subject("example.com", "mailcloud.example.net", rid),
        "Tue, 11 Jun 2024 00:12:40 +0000",
        f"<{rid}@mailcloud.example.net>",
        extra=[
            ("Return-Path", "<dmarc@mailcloud.example.net>"),
            ("Received", "from out3.mailcloud.example.net (out3.mailcloud.example.net [198.51.100.3])\n"
                         " by mx1.example.com (Postfix) with ESMTPS id 4VyQk71Lz3z9t\n"
                         " for <dmarc-rua@example.com>; Tue, 11 Jun 2024 00:12:41 +0000 (UTC)"),
        ],
    )
    multipart(msg, [
        text_part("This is an aggregate DMARC report for example.com from mailcloud.example.net.\n"),
        attachment(gz(xml), "application", "octet-stream", fn),
    ], "=_mc_20240611_001240")
    write(CONTAINERS / "gzip-octet-stream.eml", as_bytes(msg))

    # 2. zip attachment, application/zip, no name= and no filename= at all
    rid = "9182736450192837465"
    xml = report_xml(
        "google.com", "noreply-dmarc-support@google.com", rid, "council-a.example",
        1718064000, 1718150399,
        [("192.0.2.21", 14, "none", "pass", "pass"),
         ("198.51.100.22", 3, "none", "pass", "fail"),
         ("203.0.113.23", 2, "none", "fail", "fail")],
    )
    entry = fname("google.com", "council-a.example", 1718064000, 1718150399, "xml")
    msg = new_message(
        "noreply-dmarc-support@google.com",
        "dmarc-rua@council-a.example",
        f"Report domain: council-a.example Submitter: google.com Report-ID: {rid}",
        "Tue, 11 Jun 2024 16:59:59 -0700",
        f"<{rid}@google.com>",
    )
    part = attachment(zipped([(entry, xml)]), "application", "zip")
    part["Content-Disposition"] = "attachment"
    multipart(msg, [part], "000000000000a1b2c3d4e5f60718")
    write(CONTAINERS / "zip-no-filename.eml", as_bytes(msg))

    # 3. filename given only as RFC 2231 continuations (name*0*=, name*1*=)
    rid = "rx-20240612-b7e2"
    xml = report_xml(
        "receiver.example.org", "dmarc-reports@receiver.example.org", rid, "example.com",
        1718150400, 1718236799,
        [("198.51.100.31", 4, "none", "pass", "pass")],
    )
    # Decodes to receiver.example.org!example.com!1718150400!1718236799!rx-20240612-b7e2.xml.gz
    c0 = "us-ascii''receiver.example.org%21example.com%211718150400"
    c1 = "%211718236799%21rx-20240612-b7e2.xml.gz"
    msg = new_message(
        "DMARC Reporter <dmarc-reports@receiver.example.org>",
        "dmarc-rua@example.com",
        subject("example.com", "receiver.example.org", rid),
        "Thu, 13 Jun 2024 02:00:03 +0200",
        f"<{rid}@receiver.example.org>",
    )
    part = MIMEPart(policy=EML_POLICY)
    part.set_content(gz(xml), maintype="application", subtype="gzip", cte="base64")
    del part["Content-Type"]
    # set_raw: stored and written as given (already folded), never re-encoded
    part.set_raw("Content-Type", f"application/gzip;\n name*0*={c0};\n name*1*={c1}")
    part.set_raw("Content-Disposition", f"attachment;\n filename*0*={c0};\n filename*1*={c1}")
    multipart(msg, [
        text_part("Aggregate report attached.\n"),
        part,
    ], "----=_Part_3344_1718236803")
    write(CONTAINERS / "rfc2231-filename.eml", as_bytes(msg))

    # 4. bogus "ContentType:" header carries the real type; Content-Type lies
    rid = "eh-1718236800-0042"
    xml = report_xml(
        "Example Hosting", "dmarc-reports@hosting.example.com", rid, "example.net",
        1718236800, 1718323199,
        [("192.0.2.41", 7, "none", "pass", "pass"),
         ("2001:db8:41::1", 2, "none", "pass", "pass")],
    )
    msg = new_message(
        "dmarc-reports@hosting.example.com",
        "dmarc-rua@example.net",
        subject("example.net", "hosting.example.com", rid),
        "Fri, 14 Jun 2024 03:15:00 +0000",
        f"<{rid}@hosting.example.com>",
    )
    part = attachment(gz(xml), "application", "octet-stream")
    part["ContentType"] = "application/gzip"
    part["Content-Disposition"] = "attachment"
    multipart(msg, [
        text_part("DMARC aggregate report for example.net.\n"),
        part,
    ], "b1_eh0042")
    write(CONTAINERS / "contenttype-header.eml", as_bytes(msg))

    # 5. report inline as the (only) body, text/xml, quoted-printable, LF line ends
    rid = "smallmx-2024061401"
    xml = report_xml(
        "smallmx.example.org", "postmaster@smallmx.example.org", rid, "council-a.example",
        1718323200, 1718409599,
        [("203.0.113.51", 1, "none", "fail", "fail"),
         ("192.0.2.52", 3, "none", "pass", "pass")],
    )
    msg = EmailMessage(policy=MBOX_POLICY)
    msg["From"] = "postmaster@smallmx.example.org"
    msg["To"] = "dmarc-rua@council-a.example"
    msg["Subject"] = subject("council-a.example", "smallmx.example.org", rid)
    msg["Date"] = "Sat, 15 Jun 2024 00:00:07 +0000"
    msg["Message-ID"] = f"<{rid}@smallmx.example.org>"
    msg.set_content(xml.decode("utf-8"), subtype="xml", charset="utf-8", cte="quoted-printable")
    write(CONTAINERS / "inline-body.eml", as_bytes(msg, policy=MBOX_POLICY))

    # 6. two different reports in one mail: one .xml.gz and one .zip
    rid_a, rid_b = "bk-20240615-a", "bk-20240615-b"
    xml_a = report_xml(
        "bulk.example.net", "dmarc@bulk.example.net", rid_a, "example.com",
        1718409600, 1718495999,
        [("192.0.2.61", 30, "none", "pass", "pass"),
         ("198.51.100.62", 5, "none", "pass", "fail")],
    )
    xml_b = report_xml(
        "bulk.example.net", "dmarc@bulk.example.net", rid_b, "example.org",
        1718409600, 1718495999,
        [("192.0.2.63", 8, "none", "pass", "pass")],
    )
    msg = new_message(
        "dmarc@bulk.example.net",
        "dmarc-rua@example.com",
        f"DMARC aggregate reports from bulk.example.net ({rid_a}, {rid_b})",
        "Sun, 16 Jun 2024 01:30:00 +0000",
        "<bk-20240615@bulk.example.net>",
        extra=[
            ("Return-Path", "<dmarc@bulk.example.net>"),
            ("Received", "from mta7.bulk.example.net (mta7.bulk.example.net [203.0.113.7])\n"
                         " by mx1.example.com (Postfix) with ESMTPS id 4W1b2c3D4eZ8q\n"
                         " for <dmarc-rua@example.com>; Sun, 16 Jun 2024 01:30:02 +0000 (UTC)"),
        ],
    )
    multipart(msg, [
        text_part("Two aggregate reports are attached, one per policy domain.\n"),
        attachment(gz(xml_a), "application", "gzip",
                   fname("bulk.example.net", "example.com", 1718409600, 1718495999, "xml.gz")),
        attachment(zipped([(fname("bulk.example.net", "example.org", 1718409600, 1718495999, "xml"), xml_b)]),
                   "application", "zip",
                   fname("bulk.example.net", "example.org", 1718409600, 1718495999, "zip")),
    ], "=_bk_two_reports")
    write(CONTAINERS / "two-reports.eml", as_bytes(msg))

    # 7. one zip, two XML entries
    xml_a = report_xml(
        "archive.example.com", "dmarc@archive.example.com", "ar-20240616-1", "example.com",
        1718496000, 1718582399,
        [("192.0.2.71", 10, "none", "pass", "pass")],
    )
    xml_b = report_xml(
        "archive.example.com", "dmarc@archive.example.com", "ar-20240616-2", "example.org",
        1718496000, 1718582399,
        [("198.51.100.72", 6, "none", "pass", "pass"),
         ("203.0.113.73", 1, "reject", "fail", "fail")],
        p="reject",
    )
    write(CONTAINERS / "multi-entry.zip", zipped([
        (fname("archive.example.com", "example.com", 1718496000, 1718582399, "xml"), xml_a),
        (fname("archive.example.com", "example.org", 1718496000, 1718582399, "xml"), xml_b),
    ]))

    # 8. mbox with three messages; a body line "From ..." is quoted as ">From ..."
    mbox = b""
    # 8a: .xml.gz attachment
    rid = "m1-20240617"
    xml = report_xml(
        "mbox-one.example.net", "dmarc@mbox-one.example.net", rid, "example.com",
        1718582400, 1718668799,
        [("192.0.2.84", 12, "none", "pass", "pass"),
         ("198.51.100.85", 2, "none", "fail", "pass")],
    )
    msg = new_message(
        "dmarc@mbox-one.example.net", "dmarc-rua@example.com",
        subject("example.com", "mbox-one.example.net", rid),
        "Mon, 17 Jun 2024 00:04:11 +0000", f"<{rid}@mbox-one.example.net>",
    )
    msg.policy = MBOX_POLICY
    multipart(msg, [
        text_part("Aggregate report attached.\n"),
        attachment(gz(xml), "application", "gzip",
                   fname("mbox-one.example.net", "example.com", 1718582400, 1718668799, "xml.gz")),
    ], "mbox-part-1")
    mbox += b"From dmarc@mbox-one.example.net Mon Jun 17 00:04:11 2024\n"
    mbox += as_bytes(msg, policy=MBOX_POLICY, mangle_from=True) + b"\n"
    # 8b: .zip attachment; its text part has a line that starts with "From "
    rid = "m2-20240617"
    xml = report_xml(
        "mbox-two.example.org", "dmarc@mbox-two.example.org", rid, "example.org",
        1718582400, 1718668799,
        [("203.0.113.86", 6, "none", "pass", "pass")],
    )
    msg = new_message(
        "dmarc@mbox-two.example.org", "dmarc-rua@example.org",
        subject("example.org", "mbox-two.example.org", rid),
        "Mon, 17 Jun 2024 02:10:00 +0000", f"<{rid}@mbox-two.example.org>",
    )
    msg.policy = MBOX_POLICY
    multipart(msg, [
        text_part(
            "Hello,\n\n"
            "From now on reports for example.org come from this address.\n"
            "The report is attached as a zip file.\n"
        ),
        attachment(zipped([(fname("mbox-two.example.org", "example.org", 1718582400, 1718668799, "xml"), xml)]),
                   "application", "zip",
                   fname("mbox-two.example.org", "example.org", 1718582400, 1718668799, "zip")),
    ], "mbox-part-2")
    mbox += b"From dmarc@mbox-two.example.org Mon Jun 17 02:10:00 2024\n"
    mbox += as_bytes(msg, policy=MBOX_POLICY, mangle_from=True) + b"\n"
    # 8c: uncompressed .xml attachment (text/xml, base64)
    rid = "m3-20240617"
    xml = report_xml(
        "mbox-three.example.com", "dmarc@mbox-three.example.com", rid, "council-a.example",
        1718582400, 1718668799,
        [("192.0.2.87", 1, "none", "pass", "pass"),
         ("192.0.2.88", 1, "none", "pass", "pass"),
         ("2001:db8:88::1", 4, "none", "fail", "fail")],
    )
    msg = new_message(
        "dmarc@mbox-three.example.com", "dmarc-rua@council-a.example",
        subject("council-a.example", "mbox-three.example.com", rid),
        "Mon, 17 Jun 2024 05:45:30 +0000", f"<{rid}@mbox-three.example.com>",
    )
    msg.policy = MBOX_POLICY
    multipart(msg, [
        attachment(xml, "text", "xml",
                   fname("mbox-three.example.com", "council-a.example", 1718582400, 1718668799, "xml")),
    ], "mbox-part-3")
    mbox += b"From dmarc@mbox-three.example.com Mon Jun 17 05:45:30 2024\n"
    mbox += as_bytes(msg, policy=MBOX_POLICY, mangle_from=True) + b"\n"
    write(CONTAINERS / "reports.mbox", mbox)

    # 9. bare gzip files whose names give no ".xml" hint
    write(CONTAINERS / "mislabelled.gz", gz(report_xml(
        "edge.example.com", "dmarc@edge.example.com", "edge-20240618-01", "example.net",
        1718668800, 1718755199,
        [("192.0.2.91", 3, "none", "pass", "pass")],
    )))
    write(CONTAINERS / "report-no-extension", gz(report_xml(
        "edge.example.com", "dmarc@edge.example.com", "edge-20240618-02", "example.com",
        1718668800, 1718755199,
        [("192.0.2.92", 2, "none", "pass", "pass"),
         ("198.51.100.93", 1, "none", "fail", "fail")],
    )))

    # 10. single-part message whose gzip has an FNAME header and trailing CRLF
    #     after the gzip member (as Mimecast sends)
    rid = "mg-5d0c9e2f41a7b3c8"
    xml = report_xml(
        "gateway.example.net", "no-reply@gateway.example.net", rid, "example.org",
        1718755200, 1718841599,
        [("203.0.113.101", 2, "none", "fail", "pass")],
    )
    fn = fname("gateway.example.net", "example.org", 1718755200, 1718841599, "xml.gz", rid)
    payload = gz(xml, fname=fn[:-3].encode()) + b"\r\n"
    msg = new_message(
        "no-reply@gateway.example.net",
        "<dmarc-rua@example.org>",
        f"Report domain: example.org Submitter: gateway.example.net Report-ID: {rid}",
        "Thu, 20 Jun 2024 20:06:12 +1000",
        f"<{rid}@gateway.example.net>",
    )
    msg.set_content(payload, maintype="application", subtype="gzip", cte="base64")
    del msg["Content-Disposition"]
    msg.set_raw("Content-Disposition", f'attachment;\n filename="{fn}"')
    write(CONTAINERS / "gzip-trailing-crlf.eml", as_bytes(msg))


# --------------------------------------------------------------------------
# broken/ (generated part)

def build_broken():
    # 120 varied records, so the half that survives already holds complete
    # <record>s: a parser that streams rows out must still emit none of them.
    nets = ["192.0.2", "198.51.100", "203.0.113"]
    records = [
        (f"{nets[i % 3]}.{(i * 7) % 254 + 1}", (i * 37) % 101 + 1,
         "none", "pass" if i % 4 else "fail", "pass" if i % 3 else "fail")
        for i in range(120)
    ]
    full = gz(report_xml(
        "trunc.example.net", "dmarc@trunc.example.net", "trunc-20240626", "example.com",
        1719360000, 1719446399, records,
    ))
    write(BROKEN / "truncated.xml.gz", full[: len(full) // 2])

    # Yahoo, May 2023: gzipped attachments whose whole content was "unused".
    write(BROKEN / "yahoo-unused.xml.gz", gz(b"unused"))

    msg = new_message(
        '"Jane Doe" <jane.doe@example.org>',
        "dmarc-rua@example.com",
        "Automatic reply: Report domain: example.com Submitter: example.org",
        "Wed, 26 Jun 2024 08:01:02 +0000",
        "<ooo-20240626-0801@mail.example.org>",
        extra=[
            ("Auto-Submitted", "auto-replied"),
            ("X-Auto-Response-Suppress", "All"),
            ("Precedence", "auto_reply"),
        ],
    )
    plain = text_part(
        "Thank you for your message.\n\n"
        "I am out of the office until 8 July with no access to email.\n"
        "For urgent matters please contact it-service@example.org.\n\n"
        "Jane Doe\n"
    )
    html = MIMEPart(policy=EML_POLICY)
    html.set_content(
        "<html><body><p>Thank you for your message.</p>"
        "<p>I am out of the office until 8 July with no access to email.<br>"
        "For urgent matters please contact it-service@example.org.</p>"
        "<p>Jane Doe</p></body></html>\n",
        subtype="html", charset="us-ascii", cte="7bit",
    )
    multipart(msg, [plain, html], "=_ooo_alt_0801", subtype="alternative")
    write(BROKEN / "no-report.eml", as_bytes(msg))


if __name__ == "__main__":
    build_reporters()
    build_containers()
    build_broken()
