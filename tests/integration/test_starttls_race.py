"""
test_starttls_race.py - issue 12 defect 1: a client whose TLS Finished and
first EHLO leave in ONE write (JavaMail does this) must get the TLS capability
list (AUTH, no STARTTLS) every time, and AUTH must then work. The client here
is Python's ssl.SSLObject over memory BIOs on a raw socket, so the test decides
exactly which bytes go out together: the handshake is driven by hand, and its
last flight (the client Finished) is sent in one send() with the encrypted
"EHLO ...". Several hundred sessions, because the defect was a race.
Not here: JavaMail itself (test_javamail.py), TLS basics (test_tls.py).
"""

import base64
import os
import shutil
import socket
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import tlskeys  # noqa: E402

SRC = "127.0.0.2"  # untrusted: AUTH matters, and it is offered only inside TLS
SESSIONS = int(os.environ.get("MTA_STARTTLS_RACE_SESSIONS", "300"))


class MemTls:
    """A TLS client over a raw socket whose wire bytes the caller controls."""

    def __init__(self, sock, ctx):
        self.sock = sock
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=False)
        self.plain = b""

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise mtatest.ConnectionClosed("server closed during TLS; have %r" % self.plain)
        self.inc.write(data)

    def handshake_holding_last_flight(self):
        """handshake_holding_last_flight - run the handshake, but keep the client's final
        flight (its Finished) in the outgoing BIO instead of sending it."""
        while True:
            try:
                self.obj.do_handshake()
                return
            except ssl.SSLWantReadError:
                pending = self.out.read()
                if pending:
                    self.sock.sendall(pending)
                self._recv()

    def send(self, data):
        """send - encrypt DATA and send it together with any pending handshake bytes: one write."""
        self.obj.write(data)
        self.sock.sendall(self.out.read())

    def reply(self):
        """reply - one complete (multi-line) SMTP reply as a list of str lines."""
        lines = []
        while True:
            while b"\n" not in self.plain:
                try:
                    self.plain += self.obj.read(65536)
                    continue
                except ssl.SSLWantReadError:
                    pass
                pending = self.out.read()  # (TLS 1.3 key updates and the like)
                if pending:
                    self.sock.sendall(pending)
                self._recv()
            line, self.plain = self.plain.split(b"\n", 1)
            line = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines


def plain_reply(sock, buf=b""):
    """plain_reply - one complete plaintext reply from SOCK: (lines, rest)."""
    lines = []
    while True:
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise mtatest.ConnectionClosed("closed; have %r" % buf)
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        line = line.rstrip(b"\r").decode()
        lines.append(line)
        if line[3] != "-":
            return lines, buf


@unittest.skipUnless(shutil.which("saslpasswd2"), "sasl2-bin not installed")
class StarttlsRace(mtatest.MtaTestCase):
    def test_finished_and_ehlo_in_one_write(self):
        keys = os.path.join(self.tmp, "keys")
        tlskeys.make_keys(keys)
        s = tlskeys.tls_settings(keys, **tlskeys.make_sasl(os.path.join(self.tmp, "sasl")))
        s["smtpd_trusted_networks"] = "127.0.0.1/32"
        d = self.daemon(settings=s)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        creds = base64.b64encode(("\0%s\0%s" % (tlskeys.SASL_USER, tlskeys.SASL_PASS)).encode())
        bad = []
        for i in range(SESSIONS):
            sock = socket.create_connection(("127.0.0.1", d.smtp_port), timeout=mtatest.t(10),
                                            source_address=(SRC, 0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with sock:
                lines, rest = plain_reply(sock)
                self.assertTrue(lines[0].startswith("220 "), lines)
                sock.sendall(b"EHLO client.example\r\n")
                lines, rest = plain_reply(sock, rest)
                self.assertIn("250-STARTTLS", lines)
                self.assertFalse(any(x.startswith("250-AUTH") for x in lines), lines)
                sock.sendall(b"STARTTLS\r\n")
                lines, rest = plain_reply(sock, rest)
                self.assertEqual(lines, ["220 2.0.0 Ready to start TLS"])
                self.assertEqual(rest, b"")
                tls = MemTls(sock, ctx)
                tls.handshake_holding_last_flight()
                tls.send(b"EHLO client.example\r\n")  # the Finished and EHLO: one write
                ehlo = tls.reply()
                if "250-STARTTLS" in ehlo or "250-AUTH PLAIN LOGIN" not in ehlo:
                    bad.append((i, ehlo))
                    continue
                tls.send(b"AUTH PLAIN " + creds + b"\r\n")
                auth = tls.reply()
                if auth != ["235 2.7.0 Authentication successful"]:
                    bad.append((i, auth))
                    continue
                tls.send(b"QUIT\r\n")
                self.assertEqual(tls.reply(), ["221 2.0.0 Bye"])
        self.assertEqual(bad, [], "%d of %d sessions saw the wrong state after STARTTLS; first: %r"
                         % (len(bad), SESSIONS, bad[:3]))
        # every session's TLS was logged before its EHLO was answered
        d.wait_log(r"Anonymous TLS connection established from unknown\[127\.0\.0\.2\]",
                   count=SESSIONS, timeout=mtatest.t(10))


if __name__ == "__main__":
    mtatest.main()
