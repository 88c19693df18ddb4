"""
test_smtp_basic.py - the SMTP dialogue a client sees: swaks and smtplib get mail
queued, EHLO keywords, and every command's reply text as Postfix words it.
Not here: pipelining, DATA content, limits, relay policy (their own files).
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import HOSTNAME, queue_id_of, t  # noqa: E402

MSG = (b"From: Sender <sender@example.org>\r\n"
       b"To: someone@example.com\r\n"
       b"Subject: basic\r\n"
       b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
       b"Message-ID: <basic-1@client.example>\r\n"
       b"\r\n"
       b"hello\r\n")


def unfold(headers):
    return re.sub(rb"\r?\n[ \t]+", b" ", headers)


class SmtpBasic(mtatest.MtaTestCase):
    def setUp(self):
        super().setUp()
        self.d = self.daemon()

    def test_swaks_gets_queued_and_spooled(self):
        p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.d.smtp_port,
                            "--to", "someone@example.com", "--from", "sender@example.org",
                            "--helo", "client.example", "--timeout", str(int(t(20)))],
                           capture_output=True, timeout=t(60))
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "swaks failed:\n" + out + p.stderr.decode())
        m = re.search(r"<-  250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)\s*$", out, re.M)
        self.assertIsNotNone(m, "no '250 2.0.0 Ok: queued as ID' in swaks output:\n" + out)
        qid = m.group(1)
        self.assertIn(qid, self.wait_queued(self.d, 1))
        env, msg = self.d.spool_message(qid)
        self.assertIn(b"someone@example.com", env)
        self.assertIn(b"sender@example.org", env)
        # Postfix: "Received: from HELO (name [addr])\r\n\tby HOSTNAME (...) with ESMTP id QID ..."
        self.assertTrue(msg.startswith(b"Received: "), msg[:200])
        rcvd = unfold(msg[:msg.index(b"\r\n\r\n")]).split(b"\r\n")[0]
        self.assertRegex(rcvd, rb"^Received: from client\.example \(unknown \[127\.0\.0\.1\]\)")
        self.assertRegex(rcvd, rb"\bby " + re.escape(HOSTNAME.encode()) + rb"\b")
        self.assertRegex(rcvd, rb"\bwith E?SMTP\w* id " + qid.encode() + rb"\b")
        self.assertRegex(rcvd, rb"; \w{3}, [ 0-9]?\d \w{3} \d{4} \d\d:\d\d:\d\d [-+]\d{4}")
        self.assertIn(b"X-Mailer: swaks", msg)

    def test_smtplib_several_recipients(self):
        rcpts = ["a@example.com", "b@example.net", "c@example.org"]
        with self.d.smtp() as s:
            code, _ = s.ehlo()
            self.assertEqual(code, 250)
            self.assertEqual(s.mail("sender@example.org"), (250, b"2.1.0 Ok"))
            for r in rcpts:
                self.assertEqual(s.rcpt(r), (250, b"2.1.5 Ok"))
            code, text = s.data(MSG)
            self.assertEqual(code, 250, text)
            self.assertRegex(text, rb"^2\.0\.0 Ok: queued as [0-9A-F]+$")
            qid = queue_id_of(text.decode())
            # a second transaction on the same connection
            refused = s.sendmail("sender@example.org", ["d@example.com"], MSG)
            self.assertEqual(refused, {})
        ids = self.wait_queued(self.d, 2)
        self.assertEqual(len(ids), 2, ids)
        env, msg = self.d.spool_message(qid)
        self.assertEqual([v[-1] for v in self.d.envelope(qid)["rcpt"]], [r.encode() for r in rcpts])
        self.assertTrue(msg.endswith(MSG), msg)
        self.d.wait_log(r": %s: from=<sender@example\.org>, size=\d+, nrcpt=3 \(queue active\)" % qid)

    def test_ehlo_keywords(self):
        with self.d.client() as c:
            r = c.cmd("EHLO client.example")
            self.assertEqual(r.code, 250)
            self.assertEqual(r.lines[0].split()[0], HOSTNAME)
            kw = {l.split()[0].upper(): l for l in r.lines[1:]}
            for k in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8",
                      "CHUNKING", "DSN"):
                self.assertIn(k, kw, "EHLO reply lacks %s: %s" % (k, r))
            self.assertEqual(kw["SIZE"], "SIZE 10240000")
            self.assertReply(c.cmd("QUIT"), 221, "2.0.0 Bye")

    def test_helo(self):
        with self.d.client() as c:
            r = c.cmd("HELO client.example")
            self.assertEqual(r.code, 250)
            self.assertEqual(r.lines, [HOSTNAME])
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250, "2.1.0 Ok")
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5 Ok")
            self.assertReply(c.cmd("DATA"), 354, "End data with <CR><LF>.<CR><LF>")
            c.send(MSG + b".\r\n")
            r = c.reply()
            self.assertReply(r, 250, "2.0.0 Ok: queued as ")
            self.assertIn(queue_id_of(r), self.wait_queued(self.d, 1))

    def test_helo_without_name(self):
        with self.d.client() as c:
            self.assertReply(c.cmd("HELO"), 501, re.compile(r"^(5\.5\.\d )?Syntax: HELO hostname$"))
            self.assertReply(c.cmd("EHLO"), 501, re.compile(r"^(5\.5\.\d )?Syntax: EHLO hostname$"))

    def test_rset_noop_vrfy_help_quit(self):
        with self.d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0 Ok")
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250, "2.1.0 Ok")
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250, "2.1.5 Ok")
            self.assertReply(c.cmd("RSET"), 250, "2.0.0 Ok")
            # RSET dropped the transaction
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 503, "5.5.1 Error: need MAIL command")
            self.assertReply(c.cmd("DATA"), 503, "5.5.1 Error: need RCPT command")
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250, "2.1.0 Ok")
            self.assertReply(c.cmd("VRFY <someone@example.com>"), 252, "2.0.0 ")
            r = c.cmd("HELP")
            self.assertIn(r.code, (211, 214), r)
            self.assertReply(c.cmd("noop"), 250, "2.0.0 Ok")  # commands are case-insensitive
            self.assertReply(c.cmd("QUIT"), 221, "2.0.0 Bye")
            self.assertTrue(c.wait_closed(t(5)), "connection not closed after QUIT")
        self.assertEqual(self.d.queued_ids(), set())

    def test_vrfy_local_part(self):
        # Postfix answers VRFY with a bare local part ("VRFY postmaster") like any address
        with self.d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("VRFY postmaster"), 252, "2.0.0 postmaster")
            self.assertReply(c.cmd("VRFY"), 501, "5.5.4 Syntax: VRFY address")

    def test_unknown_command(self):
        with self.d.client() as c:
            self.assertReply(c.cmd("XYZZY foo"), 502, "5.5.2 Error: command not recognized")
            c.ehlo()
            self.assertReply(c.cmd("FROB"), 502, "5.5.2 Error: command not recognized")
            self.assertReply(c.cmd(""), 500, "5.5.2 Error: bad syntax")
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0 Ok")

    def test_mail_before_helo(self):
        with self.d.client() as c:
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 503,
                             "5.5.1 Error: send HELO/EHLO first")
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250, "2.1.0 Ok")

    def test_rcpt_before_mail(self):
        with self.d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 503, "5.5.1 Error: need MAIL command")

    def test_data_before_rcpt(self):
        with self.d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("DATA"), 503, "5.5.1 Error: need RCPT command")
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250, "2.1.0 Ok")
            # in a transaction without recipients Postfix says "no valid recipients"
            self.assertReply(c.cmd("DATA"), 554, "5.5.1 Error: no valid recipients")

    def test_nested_mail(self):
        with self.d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250, "2.1.0 Ok")
            self.assertReply(c.cmd("MAIL FROM:<t@example.org>"), 503,
                             "5.5.1 Error: nested MAIL command")

    def test_null_sender_and_bad_addresses(self):
        with self.d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org"), 501,
                             "5.1.7 Bad sender address syntax")
            self.assertReply(c.cmd("MAIL FROM:<> RET=HDRS ENVID=env+2Bid42"), 250, "2.1.0 Ok")
            self.assertReply(c.cmd("RCPT TO:<a b@example.com"), 501,
                             "5.1.3 Bad recipient address syntax")
            self.assertReply(c.cmd("RCPT TO:<r@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r@example.com"),
                             250, "2.1.5 Ok")
            self.assertReply(c.cmd("DATA"), 354)
            c.send(MSG + b".\r\n")
            r = c.reply()
            self.assertReply(r, 250, "2.0.0 Ok: queued as ")
        qid = queue_id_of(r)
        self.d.wait_log(r": %s: from=<>, size=\d+, nrcpt=1 \(queue active\)" % qid)
        # the DSN parameters are kept in the envelope for later bounces
        env = self.d.envelope(qid)
        self.assertEqual(env["sender"], [[b""]])
        self.assertEqual(env["ret"], [[b"hdrs"]])
        self.assertIn(env["envid"][0][0], (b"env+id42", b"env+2Bid42"))
        self.assertEqual(env["rcpt"], [[b"SUCCESS,FAILURE", b"rfc822;r@example.com", b"r@example.com"]])

    def test_mail_syntax(self):
        with self.d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL"), 501, "5.5.4 Syntax: MAIL FROM:<address>")
            self.assertReply(c.cmd("MAIL FROM:<s@example.org> FOO=BAR"), 555,
                             "5.5.4 Unsupported option: FOO=BAR")
            self.assertReply(c.cmd("MAIL FROM:<s@example.org> BODY=8BITMIME"), 250, "2.1.0 Ok")
            self.assertReply(c.cmd("RCPT"), 501, "5.5.4 Syntax: RCPT TO:<address>")


if __name__ == "__main__":
    mtatest.main()
