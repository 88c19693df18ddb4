"""
test_smtp_junk.py - issue 12 defect 6: smtpd_junk_command_limit as Postfix
has it. Junk commands (NOOP, RSET, VRFY, HELP and, as in Postfix, HELO/EHLO)
are free up to the limit (default 100); beyond it each one also counts as an
error, so the error sleep and smtpd_hard_error_limit end a session that only
idles: "421 4.7.0 HOSTNAME Error: too many errors" and the close. A queued
message forgives earlier junk and errors (Postfix's data_cmd).
Not here: the error limits of failed commands (test_smtp_limits.py).
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402

TOO_MANY = "421 4.7.0 %s Error: too many errors" % mtatest.HOSTNAME


class JunkCommands(mtatest.MtaTestCase):
    def junk_daemon(self, **extra):
        s = {"smtpd_error_sleep_time": "0"}
        s.update(extra)
        return self.daemon(settings=s)

    def assertClosedWithTooMany(self, c):
        self.assertEqual(c.reply().full(), TOO_MANY)
        self.assertTrue(c.wait_closed(), "session not closed after 421")

    def test_noop_flood_is_closed_at_the_hard_error_limit(self):
        d = self.junk_daemon(smtpd_junk_command_limit="5", smtpd_hard_error_limit="3")
        with d.client() as c:
            for i in range(5):  # up to the limit: free
                self.assertEqual(c.cmd("NOOP").full(), "250 2.0.0 Ok", i)
            # beyond it each junk command is an error; the third error ends the session
            self.assertEqual(c.cmd("NOOP").full(), "250 2.0.0 Ok")
            self.assertEqual(c.cmd("NOOP").full(), "250 2.0.0 Ok")
            self.assertEqual(c.cmd("NOOP").full(), "250 2.0.0 Ok")
            self.assertClosedWithTooMany(c)
        d.wait_log(r"too many errors after NOOP from unknown\[127\.0\.0\.1\]$")
        d.wait_log(r"disconnect from unknown\[127\.0\.0\.1\] noop=8 commands=8$")

    def test_every_junk_verb_counts(self):
        d = self.junk_daemon(smtpd_junk_command_limit="4", smtpd_hard_error_limit="2")
        with d.client() as c:
            c.ehlo()                                         # 1
            self.assertReply(c.cmd("RSET"), 250)             # 2
            self.assertReply(c.cmd("VRFY postmaster"), 252)  # 3
            self.assertReply(c.cmd("HELP"), 214)             # 4
            self.assertReply(c.cmd("HELO client.example"), 250)  # 5: error 1
            self.assertReply(c.cmd("RSET"), 250)             # 6: error 2
            self.assertClosedWithTooMany(c)
        d.wait_log(r"too many errors after RSET from unknown\[127\.0\.0\.1\]$")

    def test_default_limit_is_100(self):
        d = self.junk_daemon(smtpd_hard_error_limit="1")
        with d.client() as c:
            c.ehlo()
            for _ in range(99):
                self.assertEqual(c.cmd("NOOP").full(), "250 2.0.0 Ok")
            self.assertEqual(c.cmd("NOOP").full(), "250 2.0.0 Ok")  # the 101st junk command
            self.assertClosedWithTooMany(c)

    def test_queued_message_forgives_junk(self):
        d = self.junk_daemon(smtpd_junk_command_limit="3", smtpd_hard_error_limit="1")
        with d.client() as c:
            for _ in range(3):
                c.ehlo()
                self.assertReply(c.cmd("MAIL FROM:<a@example.org>"), 250)
                self.assertReply(c.cmd("RCPT TO:<b@example.com>"), 250)
                self.assertReply(c.cmd("DATA"), 354)
                self.assertReply(c.cmd("Subject: junk\r\n\r\nbody\r\n."), 250,
                                 "2.0.0 Ok: queued as ")
                # without the reset the 2nd EHLO would be junk command 4 (over the limit)
                self.assertReply(c.cmd("NOOP"), 250)
                self.assertReply(c.cmd("RSET"), 250)
            self.assertReply(c.cmd("NOOP"), 250)  # 3 since the last message: at the limit
            self.assertReply(c.cmd("NOOP"), 250)  # 4: over it
            self.assertClosedWithTooMany(c)
        self.assertEqual(len(self.wait_queued(d, 3)), 3)


if __name__ == "__main__":
    mtatest.main()
