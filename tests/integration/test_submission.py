"""
test_submission.py - the submission listener (submission_port) as Postfix's
master.cf submission entry behaves (smtpd_tls_security_level=encrypt,
smtpd_sasl_auth_enable=yes, smtpd_client_restrictions=permit_sasl_authenticated,
reject): before STARTTLS only EHLO/HELO/STARTTLS/NOOP/HELP/QUIT, everything else
530 5.7.0; AUTH offered only inside TLS; MAIL without AUTH refused with Postfix's
client reject, also for a client in smtpd_trusted_networks; after AUTH the mail
is queued (smtplib, as a mail client submits). Port 25 keeps its rules; a
submission_port without TLS or SASL stops the start.
Not here: AUTH itself (test_auth.py), TLS itself (test_tls.py).
"""

import os
import smtplib
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import tlskeys  # noqa: E402
from mtatest import t  # noqa: E402

MSG = b"From: user@example.org\r\nTo: x@example.com\r\nSubject: submission\r\n\r\nhi\r\n"


def noverify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class SubmissionTest(mtatest.MtaTestCase):

    def setUp(self):
        super().setUp()
        keys = os.path.join(self.tmp, "keys")
        tlskeys.make_keys(keys)
        self.port = mtatest.free_port()
        settings = tlskeys.tls_settings(keys, **tlskeys.make_sasl(os.path.join(self.tmp, "sasl")))
        settings["submission_port"] = str(self.port)
        self.d = self.daemon(settings=settings)

    def test_starttls_required_first(self):
        with mtatest.RawClient(self.port) as c:
            self.assertReply(c.greeting(), 220)
            r = c.ehlo()
            self.assertIn("STARTTLS", r.lines)
            self.assertFalse([x for x in r.lines if x.startswith("AUTH")], r.lines)
            for cmd in ("MAIL FROM:<user@example.org>", "RCPT TO:<x@example.com>", "DATA",
                        "AUTH PLAIN " + "AHVzZXIAcw==", "RSET", "VRFY postmaster", "BDAT 1 LAST"):
                self.assertReply(c.cmd(cmd), 530, "5.7.0 Must issue a STARTTLS command first")
            self.assertReply(c.cmd("NOOP"), 250)
            self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(set(self.d.queued_ids()), set())

    def test_auth_required_before_mail(self):
        # 127.0.0.1 is in smtpd_trusted_networks: on port 25 it may relay without AUTH,
        # on the submission port it may not
        with smtplib.SMTP("127.0.0.1", self.port, timeout=t(10)) as s:
            s.ehlo("client.example")
            self.assertFalse(s.has_extn("auth"))
            s.starttls(context=noverify())
            s.ehlo("client.example")
            self.assertTrue(s.has_extn("auth"))
            code, text = s.docmd("MAIL", "FROM:<user@example.org>")
            self.assertEqual((code, text), (554, b"5.7.1 <unknown[127.0.0.1]>: Client host "
                                                 b"rejected: Access denied"))
            code, text = s.docmd("RCPT", "TO:<x@example.com>")
            self.assertEqual(code, 503, text)
            s.login(tlskeys.SASL_USER, tlskeys.SASL_PASS)
            s.sendmail("user@example.org", ["x@example.com"], MSG)
        self.d.wait_log(r"NOQUEUE: reject: MAIL from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 "
                        r"<unknown\[127\.0\.0\.1\]>: Client host rejected: Access denied; "
                        r"from=<user@example\.org> proto=ESMTP helo=<client\.example>$")
        self.d.wait_log(r"sasl_method=PLAIN, sasl_username=%s" % tlskeys.SASL_USER)
        self.assertEqual(len(self.wait_queued(self.d, 1)), 1)

    def test_smtp_port_unchanged(self):
        with smtplib.SMTP("127.0.0.1", self.d.smtp_port, timeout=t(10)) as s:
            s.sendmail("user@example.org", ["x@example.com"], MSG)
        self.assertEqual(len(self.wait_queued(self.d, 1)), 1)


class SubmissionConfigTest(mtatest.MtaTestCase):

    def test_needs_tls_and_sasl(self):
        d = self.daemon(settings={"submission_port": str(mtatest.free_port())}, start=False)
        with self.assertRaises(mtatest.StartError):
            d.start(timeout=t(10))
        self.assertIn("Error: submission_port needs ssl_disabled = no and "
                      "smtpd_sasl_auth_enable = yes (STARTTLS and AUTH are required there).\n",
                      d.stderr())


if __name__ == "__main__":
    mtatest.main()
