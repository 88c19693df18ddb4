"""
test_smtp_smuggling.py - SMTP smuggling (CVE-2023-51764 family): a non-standard
end-of-data sequence inside DATA followed by a second transaction must never make
the daemon queue a second message. The smuggled text either stays inside the
first message's body or the whole transaction is rejected.
Not here: normal dot handling (test_smtp_data.py).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import ConnectionClosed, queue_id_of, t  # noqa: E402

FIRST = (b"From: s@example.org\r\nTo: r@example.com\r\nSubject: first\r\n"
         b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <first@client.example>\r\n"
         b"\r\nfirst message body")
SMUGGLED = (b"MAIL FROM:<evil@attacker.example>\r\n"
            b"RCPT TO:<victim@example.com>\r\n"
            b"DATA\r\n"
            b"From: ceo@example.com\r\nSubject: smuggled\r\n\r\nsecond message\r\n")

# Fake end-of-data sequences: bare LF, bare CR and their mixtures.
VARIANTS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r.\r", b"\n.\r", b"\r\n.\r",
            b"\r.\n", b"\r\n.\r\r\n", b"\r\n\x00.\r\n"]


class SmtpSmuggling(mtatest.MtaTestCase):
    def attempt(self, d, variant, bdat=False):
        """attempt - send one smuggling attempt; returns every reply after DATA."""
        replies = []
        with d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(FIRST + variant + SMUGGLED + b".\r\n")
            try:
                # the reply to the real end-of-data (or to whatever the daemon made of it)
                replies.append(c.reply(t(10)))
                # anything else the daemon says must come only after our QUIT
                c.send(b"QUIT\r\n")
                while True:
                    replies.append(c.reply(t(5)))
            except (ConnectionClosed, OSError):
                pass
        return replies

    def check(self, d, variant, replies, before):
        codes = [r.code for r in replies]
        label = "variant %r: replies %s" % (variant, replies)
        self.assertNotIn(354, codes, "second DATA was accepted; " + label)
        queued = [r for r in replies if r.code == 250 and queue_id_of(r)]
        self.assertLessEqual(len(queued), 1, label)
        self.assertTrue(replies and (replies[0].code == 250 or replies[0].code >= 500), label)
        if codes[-1:] != [221]:
            # the daemon may close after rejecting, but not with 250s for the smuggled commands
            self.assertNotIn(250, codes[1:], label)
        after = d.queued_ids()
        new = after - before
        self.assertLessEqual(len(new), 1, label)
        for qid in new:
            env, msg = d.spool_message(qid)
            self.assertNotIn(b"evil@attacker.example", env, label)
            self.assertNotIn(b"victim@example.com", env, label)
            self.assertTrue(msg.startswith(b"Received: "), label)
            # the smuggled text is body text of the first message, never its own headers
            self.assertIn(b"first message body", msg, label)
            self.assertIn(b"MAIL FROM:<evil@attacker.example>", msg, label)
        if queued:
            self.assertEqual(new, {queue_id_of(queued[0])}, label)
        else:
            self.assertEqual(new, set(), label)
        return new

    def run_variants(self, d):
        for v in VARIANTS:
            with self.subTest(variant=v):
                before = d.queued_ids()
                self.check(d, v, self.attempt(d, v), before)
        # the log never shows the smuggled transaction
        self.assertEqual(d.log_lines(r"from=<evil@attacker\.example>"), [])
        self.assertEqual(d.log_lines(r"to=<victim@example\.com>"), [])
        self.assertTrue(d.running())

    def test_normalize_default(self):
        d = self.daemon()
        self.run_variants(d)
        # With "normalize" (the default) a bare LF ends a line but never the DATA:
        # the bare-LF variants are accepted as one message each.
        before = d.queued_ids()
        new = self.check(d, b"\n.\n", self.attempt(d, b"\n.\n"), before)
        self.assertEqual(len(new), 1, "bare-LF message not accepted under normalize")

    def test_reject_mode(self):
        d = self.daemon(settings={"smtpd_forbid_bare_newline": "reject"})
        self.run_variants(d)
        before = d.queued_ids()
        replies = self.attempt(d, b"\n.\n")
        self.check(d, b"\n.\n", replies, before)
        self.assertGreaterEqual(replies[0].code, 500, replies)
        self.assertEqual(d.queued_ids(), before)

    def test_bare_lf_commands_after_smuggling_do_not_run(self):
        # A classic attack also sends the smuggled commands with bare LF line ends.
        d = self.daemon()
        before = d.queued_ids()
        payload = FIRST + b"\n.\n" + SMUGGLED.replace(b"\r\n", b"\n") + b"\r\n.\r\n"
        with d.client() as c:
            c.ehlo()
            c.cmd("MAIL FROM:<s@example.org>")
            c.cmd("RCPT TO:<r@example.com>")
            self.assertReply(c.cmd("DATA"), 354)
            c.send(payload)
            replies = [c.reply(t(10))]
            c.send(b"QUIT\r\n")
            try:
                while True:
                    replies.append(c.reply(t(5)))
            except (ConnectionClosed, OSError):
                pass
        self.check(d, b"\n.\n (LF commands)", replies, before)


if __name__ == "__main__":
    mtatest.main()
