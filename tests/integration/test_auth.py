"""
test_auth.py - SMTP AUTH over Cyrus SASL (a private sasldb2 made by saslpasswd2
and a private smtpd.conf, found through smtpd_sasl_config_dir), seen from the
untrusted address 127.0.0.2 with smtpd_trusted_networks = 127.0.0.1/32:
good credentials relay (PLAIN and LOGIN, smtplib and swaks), bad ones get 535
after the delay and the Postfix warning line, no AUTH gets Relay access
denied; AUTH only after TLS; 503 already authenticated; MAIL ... AUTH=<>.
Not here: TLS itself (test_tls.py).
"""

import base64
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import time
import unittest

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


if __name__ == "__main__":
    mtatest.main()
