"""
test_smtp_helo_hygiene.py - issue 12 defect 5 (intake half): HELO/EHLO text
with CR, ESC or other control bytes, 8-bit bytes or header syntax must never
reach the Received: header, the envelope or the mail log verbatim. As Postfix's
helo_cmd (printable() then neuter()): printable ASCII stays, everything else
and each of space <>()\\";@ becomes '?'; ':' stays for [IPv6:...] literals.
Not here: mtactl's printing of remote replies (the queue listing tests).
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402

# CR (which the line reader keeps inside a line), ESC sequences, DEL, 8-bit, and text
# that would forge a second header line or the Received comment
EVIL = b"evil\rX-Injected: 1\x1b[31m\x1b]0;title\x07\x7f\xc3\xa9 (localhost [127.0.0.1])"
CLEAN = "evil?X-Injected:?1?[31m?]0?title??????localhost?[127.0.0.1]?"


class HeloHygiene(mtatest.MtaTestCase):
    def test_control_bytes_never_reach_header_envelope_or_log(self):
        d = self.daemon(settings={"smtpd_trusted_networks": "127.0.0.1/32"})
        with d.client() as c:
            self.assertReply(c.cmd(b"EHLO " + EVIL), 250)
            self.assertReply(c.cmd("MAIL FROM:<a@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<b@example.com>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            r = c.cmd("Subject: helo\r\n\r\nbody\r\n.")
            self.assertReply(r, 250, "2.0.0 Ok: queued as ")
        qid = mtatest.queue_id_of(r)
        env, msg = d.spool_message(qid)
        head = msg.split(b"\r\n\r\n", 1)[0]
        first = head.split(b"\r\n", 1)[0]
        self.assertEqual(first, b"Received: from " + CLEAN.encode() + b" (unknown [127.0.0.1])")
        self.assertNotIn(b"\r\nX-Injected", head)
        for raw in (msg, env):
            self.assertFalse(re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]", raw),
                             "control or 8-bit byte in %r" % raw[:600])
            self.assertNotIn(b"\rX", raw)

    def test_reject_log_line_shows_printable_helo(self):
        # 127.0.0.2 is not trusted: its RCPT is refused, and the reject line names the HELO
        d = self.daemon(settings={"smtpd_trusted_networks": "127.0.0.1/32"})
        with d.client(source="127.0.0.2") as c:
            self.assertReply(c.cmd(b"HELO " + EVIL), 250)
            self.assertReply(c.cmd("MAIL FROM:<a@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<b@example.com>"), 554)
        lines = d.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.2\]: ")
        self.assertTrue(lines[0].endswith(" proto=SMTP helo=<%s>" % CLEAN), lines[0])
        with open(d.maillog_path, "rb") as f:
            log = f.read()
        self.assertNotIn(b"\x1b", log)
        self.assertNotIn(b"\x07", log)
        self.assertNotIn(b"\rX-Injected", log)

    def test_address_literals_stay_readable(self):
        d = self.daemon()
        with d.client() as c:
            self.assertReply(c.cmd("EHLO [IPv6:2001:db8::1]"), 250)
            self.assertReply(c.cmd("MAIL FROM:<a@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<b@example.com>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            r = c.cmd("Subject: v6\r\n\r\nbody\r\n.")
            self.assertReply(r, 250)
        _env, msg = d.spool_message(mtatest.queue_id_of(r))
        self.assertTrue(msg.startswith(b"Received: from [IPv6:2001:db8::1] (unknown [127.0.0.1])"),
                        msg[:200])


if __name__ == "__main__":
    mtatest.main()
