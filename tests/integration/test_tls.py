"""
test_tls.py - SMTPS and STARTTLS as real clients see them: Python smtplib
(starttls, SMTP_SSL), openssl s_client, swaks --tls/--tlsc; the Received:
header's TLS note and ESMTPS; the maillog's "Anonymous TLS connection
established"; TLS 1.0/1.1 refused; the STARTTLS plaintext-injection test
(CVE-2011-0411 class); no STARTTLS without SSL. Keys come from a key volume made
with the openssl CLI. Not here: AUTH (test_auth.py), key errors (test_keys.py).
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import tlskeys  # noqa: E402
from mtatest import queue_id_of  # noqa: E402

MSG = (b"From: s@example.org\r\nTo: x@example.com\r\nSubject: tls\r\n"
       b"Message-ID: <tls@client.example>\r\n\r\nhello over TLS\r\n")
TLS_NOTE = re.compile(rb"\(using TLSv1\.[23] with cipher [A-Z0-9_-]+ \(\d+/\d+ bits\)\)")


def noverify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Tls(mtatest.MtaTestCase):
    def tls_daemon(self, **extra):
        keys = os.path.join(self.tmp, "keys")
        tlskeys.make_keys(keys)
        return self.daemon(settings=tlskeys.tls_settings(keys, **extra))

    def assertTlsReceived(self, d, qid):
        _env, msg = d.spool_message(qid)
        head = msg.split(b"\r\n\r\n", 1)[0]
        self.assertRegex(head, TLS_NOTE)
        self.assertRegex(head, rb"\tby mta\.test\.example \(mta\) with ESMTPS id " + qid.encode())

    def test_starttls_smtplib(self):
        d = self.tls_daemon()
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=mtatest.t(10)) as s:
            s.ehlo("client.example")
            self.assertTrue(s.has_extn("starttls"))
            code, _ = s.starttls(context=noverify())
            self.assertEqual(code, 220)
            s.ehlo("client.example")
            self.assertFalse(s.has_extn("starttls"), "STARTTLS offered again inside TLS")
            refused = s.sendmail("s@example.org", ["x@example.com"], MSG)
            self.assertEqual(refused, {})
        lines = d.wait_log(r"Anonymous TLS connection established from unknown\[127\.0\.0\.1\]: "
                           r"TLSv1\.3 with cipher TLS_AES_256_GCM_SHA384 \(256/256 bits\)$")
        self.assertEqual(len(lines), 1)
        ids = self.wait_queued(d, 1)
        self.assertEqual(len(ids), 1)
        self.assertTlsReceived(d, ids.pop())
        d.wait_log(r"disconnect from unknown\[127\.0\.0\.1\] ehlo=2 starttls=1 mail=1 rcpt=1 "
                   r"data=1 quit=1 commands=7$")

    def test_smtps_smtplib(self):
        d = self.tls_daemon()
        port = int(d.settings()["smtps_port"])
        with smtplib.SMTP_SSL("127.0.0.1", port, context=noverify(), timeout=mtatest.t(10)) as s:
            code, _ = s.ehlo("client.example")
            self.assertEqual(code, 250)
            self.assertFalse(s.has_extn("starttls"))
            self.assertEqual(s.sendmail("s@example.org", ["x@example.com"], MSG), {})
        ids = self.wait_queued(d, 1)
        self.assertTlsReceived(d, ids.pop())

    def test_ended_smtps_session_is_not_counted(self):
        """A client that ends an SMTPS session with QUIT and at once opens the next one is not
        refused by smtpd_client_connection_count_limit while the daemon still writes the 221
        through TLS: the daemon is stopped while the QUIT and then the new connection arrive."""
        d = self.tls_daemon(smtpd_client_connection_count_limit="2")
        port = int(d.settings()["smtps_port"])

        def smtps():
            raw = socket.create_connection(("127.0.0.1", port), timeout=mtatest.t(10))
            return noverify().wrap_socket(raw, server_hostname="mta.test.example")

        a, b = smtps(), smtps()
        fa, fb = a.makefile("rb"), b.makefile("rb")
        self.assertTrue(fa.readline().startswith(b"220 "))
        self.assertTrue(fb.readline().startswith(b"220 "))
        os.kill(d.pid(), signal.SIGSTOP)
        try:
            a.sendall(b"QUIT\r\n")
            time.sleep(0.1)
            c = socket.create_connection(("127.0.0.1", port), timeout=mtatest.t(10))
        finally:
            os.kill(d.pid(), signal.SIGCONT)
        self.assertTrue(fa.readline().startswith(b"221 "))
        c = noverify().wrap_socket(c, server_hostname="mta.test.example")
        fc = c.makefile("rb")
        self.assertTrue(fc.readline().startswith(b"220 "), "the new session was refused")
        for s in (a, b, c):
            s.close()
        for f in (fa, fb, fc):
            f.close()

    def test_openssl_s_client(self):
        d = self.tls_daemon()
        port = int(d.settings()["smtps_port"])
        r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                            "127.0.0.1:%d" % d.smtp_port, "-quiet"],
                           input=b"QUIT\r\n", capture_output=True, timeout=mtatest.t(20))
        self.assertIn(b"221 2.0.0 Bye", r.stdout, r.stderr)
        r = subprocess.run(["openssl", "s_client", "-tls1_2", "-connect", "127.0.0.1:%d" % port],
                           input=b"", capture_output=True, timeout=mtatest.t(20))
        self.assertIn(b"Protocol  : TLSv1.2", r.stdout)
        self.assertRegex(r.stdout, rb"Cipher    : ECDHE-RSA-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)")
        for old in ("-tls1_1", "-tls1"):
            r = subprocess.run(["openssl", "s_client", old, "-cipher", "DEFAULT@SECLEVEL=0",
                                "-connect", "127.0.0.1:%d" % port],
                               input=b"", capture_output=True, timeout=mtatest.t(20))
            self.assertNotEqual(r.returncode, 0, "%s accepted: %s" % (old, r.stdout[-500:]))
            self.assertNotIn(b"220 mta.test.example", r.stdout)
        d.wait_log(r"SSL_accept error from unknown\[127\.0\.0\.1\]: .*(unsupported protocol|"
                   r"no protocols available|version)")

    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks_tls_and_tlsc(self):
        d = self.tls_daemon()
        port = int(d.settings()["smtps_port"])
        for extra, p in ((["--tls"], d.smtp_port), (["--tlsc"], port)):
            r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(p),
                                "--from", "s@example.org", "--to", "x@example.com",
                                "--helo", "client.example"] + extra,
                               capture_output=True, timeout=mtatest.t(30))
            self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace")[-2000:])
            self.assertIn(b"250 2.0.0 Ok: queued as", r.stdout)
        ids = self.wait_queued(d, 2)
        self.assertEqual(len(ids), 2)
        for qid in ids:
            self.assertTlsReceived(d, qid)

    def test_starttls_injection_is_never_answered(self):
        d = self.tls_daemon()
        with d.client() as c:
            c.ehlo()
            c.send(b"STARTTLS\r\nRSET\r\n")  # one packet: RSET is injected plaintext
            r = c.reply()
            self.assertEqual(r.full(), "220 2.0.0 Ready to start TLS")
            self.assertEqual(c.buf, b"")
            tls = noverify().wrap_socket(c.sock, server_hostname="mta.test.example")
            tls.settimeout(mtatest.t(1))
            with self.assertRaises((socket.timeout, TimeoutError)):
                data = tls.recv(1024)
                self.fail("unrequested data inside TLS: %r" % data)
            tls.settimeout(mtatest.t(10))
            tls.sendall(b"MAIL FROM:<s@example.org>\r\n")
            self.assertEqual(tls.recv(1024), b"503 5.5.1 Error: send HELO/EHLO first\r\n")
            tls.sendall(b"EHLO client.example\r\n")
            ehlo = b""
            while not re.search(rb"(^|\n)250 [^\r]*\r\n$", ehlo):
                ehlo += tls.recv(4096)
            self.assertNotIn(b"STARTTLS", ehlo)
            tls.close()
        d.wait_log(r"warning: unknown\[127\.0\.0\.1\]: 6 bytes of plaintext pipelined after "
                   r"STARTTLS discarded")

    def test_no_starttls_without_ssl(self):
        d = self.daemon()
        with d.client() as c:
            self.assertNotIn("STARTTLS", c.ehlo().lines)
            self.assertEqual(c.cmd("STARTTLS").full(), "502 5.5.1 Error: command not implemented")


if __name__ == "__main__":
    mtatest.main()
