#!/usr/bin/env python3
"""Wraps report files as rua mails, the way reporters send them.

    wrap-as-mail.py OUTDIR FILE...

Each other FILE (.xml, .gz, .zip, or a name without a known extension) becomes
OUTDIR/<name>.eml: a multipart mail with the file as a base64 attachment
(application/gzip, application/zip, text/xml, else application/octet-stream), a subject in the
RFC 7489 style and a unique Message-ID. .eml and mbox files are copied as they are (the
delivery script splits mbox files). Deterministic apart from nothing: dates are fixed.
"""
import email.message
import email.utils
import hashlib
import shutil
import sys
from pathlib import Path

TYPES = {".gz": ("application", "gzip"), ".zip": ("application", "zip"), ".xml": ("text", "xml")}


def wrap(path: Path, outdir: Path) -> Path:
    data = path.read_bytes()
    maintype, subtype = TYPES.get(path.suffix.lower(), ("application", "octet-stream"))
    msg = email.message.EmailMessage()
    msg["From"] = "noreply-dmarc@reporter.example"
    msg["To"] = "rua@reports.example"
    msg["Subject"] = f"Report Domain: example.com Submitter: reporter.example Report-ID: {path.name}"
    msg["Date"] = email.utils.formatdate(1700000000, usegmt=True)
    digest = hashlib.sha1(str(path).encode() + data).hexdigest()[:16]
    msg["Message-ID"] = f"<{digest}@reporter.example>"
    msg.set_content("This is an aggregate report from reporter.example.")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
    out = outdir / f"{path.name}.eml"
    out.write_bytes(bytes(msg))
    return out


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = Path(sys.argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[2:]:
        path = Path(name)
        if path.suffix.lower() in (".eml", ".mbox"):
            shutil.copy(path, outdir / path.name)
        else:
            wrap(path, outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
