"""
test_auth.py - SMTP AUTH over Cyrus SASL (a private sasldb2 made by saslpasswd2
and a private smtpd.conf, found through smtpd_sasl_config_dir), seen from the
untrusted address 127.0.0.2 with smtpd_trusted_networks = 127.0.0.1/32:
good credentials relay (PLAIN and LOGIN, smtplib and swaks), bad ones get 535
after the delay and the Postfix warning line, no AUTH gets Relay access
denied; AUTH only after TLS; 503 already authenticated; MAIL ... AUTH=<>.
The password check runs off the event loop: with a saslauthd stand-in (a Unix
socket served here, answering only when the test says so) other sessions get
their banner and queue mail while a check is pending; a check still pending at
shutdown is answered and the daemon exits cleanly.
Not here: TLS itself (test_tls.py).
"""

import base64
import os
import shutil
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import unittest
import queue

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import tlskeys  # noqa: E402

MSG = b"From: user@example.org\r\nTo: x@example.com\r\nSubject: auth\r\n\r\nhi\r\n"
SRC = "127.0.0.2"


def noverify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def b64(s):
    return base64.b64encode(s.encode()).decode()


class FakeSaslauthd:
    """A saslauthd stand-in on a Unix socket: each request (four counted strings:
    login, password, service, realm) is put on self.requests and answered only
    once self.release is set: "OK" for PASSWORD, else "NO"."""

    def __init__(self, path, password):
        self.password = password.encode()
        self.requests = queue.Queue()
        self.release = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)  # mtad connects as mail_owner (as to saslauthd's mux)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _serve(self, conn):
        with conn:
            conn.settimeout(60)
            try:
                fields = []
                for _ in range(4):
                    (n,) = struct.unpack("!H", self._read(conn, 2))
                    fields.append(self._read(conn, n))
            except (EOFError, OSError):
                return
            self.requests.put(fields)
            self.release.wait(60)
            answer = b"OK" if fields[1] == self.password else b"NO bad password"
            try:
                conn.sendall(struct.pack("!H", len(answer)) + answer)
            except OSError:
                pass

    def close(self):
        self.stopping = True
        self.release.set()
        self.sock.close()


@unittest.skipUnless(shutil.which("saslpasswd2"), "sasl2-bin not installed")
class Auth(mtatest.MtaTestCase):
    def auth_daemon(self, **extra):
        keys = os.path.join(self.tmp, "keys")
        tlskeys.make_keys(keys)
        s = tlskeys.tls_settings(keys, **tlskeys.make_sasl(os.path.join(self.tmp, "sasl")))
        s["smtpd_trusted_networks"] = "127.0.0.1/32"
        s.update(extra)
        return self.daemon(settings=s)

    def smtp(self, d):
        s = smtplib.SMTP("127.0.0.1", d.smtp_port, source_address=(SRC, 0),
                         timeout=mtatest.t(10))
        s.ehlo("client.example")
        return s

    def test_good_login_relays(self):
        d = self.auth_daemon()
        for mech in ("PLAIN", "LOGIN"):
            with self.smtp(d) as s:
                self.assertFalse(s.has_extn("auth"), "AUTH offered before TLS")
                s.starttls(context=noverify())
                s.ehlo("client.example")
                self.assertEqual(s.esmtp_features["auth"].split(), ["PLAIN", "LOGIN"])
                s.user, s.password = tlskeys.SASL_USER, tlskeys.SASL_PASS
                code, text = s.auth(mech, getattr(s, "auth_" + mech.lower()),
                                    initial_response_ok=(mech == "PLAIN"))
                self.assertEqual((code, text), (235, b"2.7.0 Authentication successful"))
                self.assertEqual(s.docmd("AUTH", "PLAIN"), (503, b"5.5.1 Error: already authenticated"))
                self.assertEqual(s.sendmail("user@example.org", ["x@example.com"], MSG), {})
            d.wait_log(r": client=unknown\[127\.0\.0\.2\], sasl_method=%s, sasl_username=user$" % mech)
        ids = self.wait_queued(d, 2)
        for qid in ids:
            _env, msg = d.spool_message(qid)
            self.assertRegex(msg, rb"\(mta\) with ESMTPSA id ")

    def test_bad_password_delayed_535_logged(self):
        d = self.auth_daemon()
        with self.smtp(d) as s:
            s.starttls(context=noverify())
            s.ehlo("client.example")
            t0 = time.monotonic()
            code, text = s.docmd("AUTH", "LOGIN " + b64(tlskeys.SASL_USER))
            self.assertEqual(code, 334)
            self.assertEqual(base64.b64decode(text), b"Password:")
            code, text = s.docmd(b64("wrong"))
            self.assertEqual(code, 535)
            self.assertTrue(text.startswith(b"5.7.8 Error: authentication failed: "), text)
            self.assertGreaterEqual(time.monotonic() - t0, 0.9, "535 was not delayed")
            s.mail("user@example.org")
            code, text = s.rcpt("x@example.com")
            self.assertEqual((code, text), (554, b"5.7.1 <x@example.com>: Relay access denied"))
        d.wait_log(r"warning: unknown\[127\.0\.0\.2\]: SASL LOGIN authentication failed: ")

    def test_repeated_failures_close_the_session(self):
        d = self.auth_daemon(smtpd_hard_error_limit="3", smtpd_error_sleep_time="0")
        with self.smtp(d) as s:
            s.starttls(context=noverify())
            s.ehlo("client.example")
            bad = b64("\0user\0nope")
            self.assertEqual(s.docmd("AUTH", "PLAIN " + bad)[0], 535)
            self.assertEqual(s.docmd("AUTH", "PLAIN " + bad)[0], 535)
            self.assertEqual(s.docmd("AUTH", "PLAIN " + bad)[0], 535)
            self.assertEqual(s.getreply(), (421, b"4.7.0 mta.test.example Error: too many errors"))
            with self.assertRaises(smtplib.SMTPServerDisconnected):
                s.noop()
        d.wait_log(r"too many errors after AUTH from unknown\[127\.0\.0\.2\]")

    def test_no_auth_before_tls_and_auth_param(self):
        d = self.auth_daemon()
        with d.client(source=SRC) as c:
            c.ehlo()
            self.assertEqual(c.cmd("AUTH PLAIN " + b64("\0user\0" + tlskeys.SASL_PASS)).full(),
                             "503 5.5.1 Error: authentication not enabled")
            self.assertEqual(c.cmd("MAIL FROM:<a@example.org> AUTH=<>").full(),
                             "555 5.5.4 Unsupported option: AUTH=<>")
        d2 = self.auth_daemon(smtpd_tls_auth_only="no")
        with d2.client(source=SRC) as c:
            self.assertIn("AUTH PLAIN LOGIN", c.ehlo().lines)
            self.assertEqual(c.cmd("AUTH PLAIN " + b64("\0user\0" + tlskeys.SASL_PASS)).full(),
                             "235 2.7.0 Authentication successful")
            self.assertEqual(c.cmd("MAIL FROM:<a@example.org> AUTH=<>").full(), "250 2.1.0 Ok")
            self.assertEqual(c.cmd("RCPT TO:<x@example.com>").full(), "250 2.1.5 Ok")

    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks_auth(self):
        d = self.auth_daemon()
        base = ["swaks", "--server", "127.0.0.1", "--port", str(d.smtp_port), "--local-interface",
                SRC, "--from", "user@example.org", "--to", "x@example.com", "--tls",
                "--auth", "LOGIN", "--auth-user", tlskeys.SASL_USER]
        r = subprocess.run(base + ["--auth-password", tlskeys.SASL_PASS], capture_output=True,
                           timeout=mtatest.t(30))
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace")[-2000:])
        self.assertIn(b"235 2.7.0 Authentication successful", r.stdout)
        r = subprocess.run(base + ["--auth-password", "bad"], capture_output=True,
                           timeout=mtatest.t(30))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"535 5.7.8 Error: authentication failed", r.stdout)

    def send_mail(self, d):
        """send_mail - a whole trusted session (banner to 250 queued) on its own connection."""
        with d.client(timeout=mtatest.t(10)) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<other@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<x@example.com>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            self.assertReply(c.cmd(MSG.decode() + "."), 250, "2.0.0 Ok: queued as ")
            self.assertReply(c.cmd("QUIT"), 221)

    def test_auth_in_progress_does_not_block_others(self):
        d = self.auth_daemon(smtpd_tls_auth_only="no")
        with d.client(source=SRC) as a:
            a.ehlo()
            r = a.cmd("AUTH LOGIN " + b64(tlskeys.SASL_USER))
            self.assertEqual((r.code, base64.b64decode(r.text)), (334, b"Password:"))
            self.send_mail(d)  # while A sits at the password prompt
            self.assertEqual(a.cmd(b64(tlskeys.SASL_PASS)).full(),
                             "235 2.7.0 Authentication successful")
            self.assertReply(a.cmd("MAIL FROM:<user@example.org>"), 250)
            self.assertReply(a.cmd("RCPT TO:<x@example.com>"), 250)
        self.assertEqual(len(self.wait_queued(d, 1)), 1)

    def saslauthd_daemon(self, password="s3cret"):
        """saslauthd_daemon - mtad whose Cyrus config checks passwords through a FakeSaslauthd."""
        conf = os.path.join(self.tmp, "sasl-slow")
        os.makedirs(conf)
        fake = FakeSaslauthd(os.path.join(conf, "mux"), password)
        self.addCleanup(fake.close)
        with open(os.path.join(conf, "smtpd.conf"), "w") as f:
            f.write("pwcheck_method: saslauthd\nsaslauthd_path: %s\nmech_list: PLAIN LOGIN\n"
                    % os.path.join(conf, "mux"))
        d = self.auth_daemon(smtpd_tls_auth_only="no", smtpd_sasl_config_dir=conf)
        return d, fake

    def test_slow_password_backend_does_not_stall_the_daemon(self):
        d, fake = self.saslauthd_daemon()
        with d.client(source=SRC) as good, d.client(source=SRC) as bad:
            good.ehlo()
            bad.ehlo()
            good.send("AUTH PLAIN " + b64("\0user\0s3cret") + "\r\n")
            bad.send("AUTH PLAIN " + b64("\0user\0wrong") + "\r\n")
            got = [fake.requests.get(timeout=mtatest.t(10))[1] for _ in range(2)]
            self.assertEqual(sorted(got), [b"s3cret", b"wrong"])
            # both checks hang in the backend: new sessions are still served
            self.send_mail(d)
            self.send_mail(d)
            with self.assertRaises(socket.timeout):
                good.reply(timeout=0.3)  # no answer before the backend's
            fake.release.set()
            self.assertEqual(good.reply().full(), "235 2.7.0 Authentication successful")
            self.assertReply(good.cmd("MAIL FROM:<user@example.org>"), 250)
            self.assertReply(good.cmd("RCPT TO:<x@example.com>"), 250)
            r = bad.reply()
            self.assertEqual(r.code, 535, r.full())
            self.assertTrue(r.text.startswith("5.7.8 Error: authentication failed: "), r.full())
            self.assertReply(bad.cmd("NOOP"), 250)
        d.wait_log(r"warning: unknown\[127\.0\.0\.2\]: SASL PLAIN authentication failed: ")
        self.assertEqual(len(self.wait_queued(d, 2)), 2)

    def test_check_pending_at_shutdown(self):
        d, fake = self.saslauthd_daemon()
        with d.client(source=SRC) as a:
            a.ehlo()
            a.send("AUTH PLAIN " + b64("\0user\0s3cret") + "\r\n")
            fake.requests.get(timeout=mtatest.t(10))
            threading.Timer(1.0, fake.release.set).start()
            self.assertEqual(d.stop(), 0)  # the session is closed; the late answer is dropped
            self.assertTrue(a.wait_closed(mtatest.t(5)))
        self.assertRegex(d.maillog(), r"disconnect from unknown\[127\.0\.0\.2\]")


if __name__ == "__main__":
    mtatest.main()
