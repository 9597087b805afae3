"""Local SMTP server for development and tests (Debian's python3-aiosmtpd), 127.0.0.1 only.

Three listeners, one store of received mail:
  PORT      plain, no login (as a local relay: `[smtp] tls = "none"`)
  PORT + 1  STARTTLS required before login, login required (`tls = "starttls"`)
  PORT + 2  implicit TLS, login required (`tls = "tls"`)
Login: the USER and PASSWORD given. Each message accepted is written to MAILDIR as
<n>.eml, beside <n>.json (envelope sender, recipients, listener port, login user).
Runs until killed; writes READY_FILE once every listener is up.
"""

import argparse
import asyncio
import itertools
import json
import os
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    def __init__(self, maildir):
        self.maildir = maildir
        self.lock = threading.Lock()
        os.makedirs(maildir, exist_ok=True)
        existing = [int(n.split(".")[0]) for n in os.listdir(maildir) if n.endswith(".eml")]
        self.counter = itertools.count(max(existing, default=0) + 1)

    def save(self, envelope, port, user):
        with self.lock:
            n = next(self.counter)
        base = os.path.join(self.maildir, f"{n:06d}")
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "port": port,
            "user": user,
        }
        # The .json first, the .eml last (renamed into place): a reader that sees the .eml
        # sees a whole message and its envelope.
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")


class Handler:
    def __init__(self, store, port):
        self.store = store
        self.port = port

    async def handle_DATA(self, server, session, envelope):
        self.store.save(envelope, self.port, session.auth_data)
        return "250 2.0.0 OK queued"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, auth_data=auth_data.login.decode() if ok else None)

    return check


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--ready-file", required=True)
    args = ap.parse_args()

    store = Store(args.maildir)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
    check = authenticator(args.user, args.password)
    common = dict(hostname="127.0.0.1", server_hostname="localhost", data_size_limit=64 << 20)
    controllers = [
        Controller(Handler(store, args.port), port=args.port, **common),
        Controller(
            Handler(store, args.port + 1),
            port=args.port + 1,
            tls_context=tls,
            require_starttls=True,
            auth_required=True,
            authenticator=check,
            **common,
        ),
        Controller(
            Handler(store, args.port + 2),
            port=args.port + 2,
            ssl_context=tls,
            auth_required=True,
            # The connection is TLS from the first byte; aiosmtpd only knows of STARTTLS.
            auth_require_tls=False,
            authenticator=check,
            **common,
        ),
    ]
    for c in controllers:
        c.start()
    with open(args.ready_file, "w") as f:
        f.write(str(os.getpid()))
    try:
        threading.Event().wait()
    finally:
        for c in controllers:
            c.stop()


if __name__ == "__main__":
    main()
