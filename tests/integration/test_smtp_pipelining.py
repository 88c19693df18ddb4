"""
test_smtp_pipelining.py - RFC 2920 PIPELINING and RFC 3030 CHUNKING as a client
sees them: commands sent in one write get their replies in order, and two whole
transactions (BDAT) in one write queue two messages.
Not here: what happens to the content (test_smtp_data.py).

Note: RFC 2920 lets DATA only end a group (the client waits for 354), and the
daemon runs with smtpd_forbid_unauth_pipelining = yes, so the DATA-based tests
send "MAIL..RCPT..DATA" in one write and the content in the next; the
transaction-pair test uses BDAT, which may be pipelined completely.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import queue_id_of, t  # noqa: E402


def msg(n):
    return (b"From: s@example.org\r\nTo: r@example.com\r\nSubject: pipelined %d\r\n"
            b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <pipe-%d@client.example>\r\n"
            b"\r\nbody of message %d\r\n" % (n, n, n))


class SmtpPipelining(mtatest.MtaTestCase):
    def setUp(self):
        super().setUp()
        self.d = self.daemon()

    def test_transaction_in_one_write(self):
        with self.d.client() as c:
            r = c.ehlo()
            self.assertIn("PIPELINING", r.lines)
            c.send(b"MAIL FROM:<s@example.org>\r\n"
                   b"RCPT TO:<r1@example.com>\r\n"
                   b"RCPT TO:<bad address\r\n"
                   b"RCPT TO:<r2@example.com>\r\n"
                   b"DATA\r\n")
            rs = c.replies(5)
            self.assertEqual([r.full() for r in rs],
                             ["250 2.1.0 Ok", "250 2.1.5 Ok",
                              "501 5.1.3 Bad recipient address syntax", "250 2.1.5 Ok",
                              "354 End data with <CR><LF>.<CR><LF>"])
            c.send(msg(1) + b".\r\nQUIT\r\n")
            r1, r2 = c.replies(2)
            self.assertReply(r1, 250, "2.0.0 Ok: queued as ")
            self.assertReply(r2, 221, "2.0.0 Bye")
            self.assertTrue(c.wait_closed(t(5)))
        qid = queue_id_of(r1)
        self.assertEqual(self.wait_queued(self.d, 1), {qid})
        env, m = self.d.spool_message(qid)
        self.assertIn(b"r1@example.com", env)
        self.assertIn(b"r2@example.com", env)
        self.assertTrue(m.endswith(msg(1)))

    def test_rset_in_pipeline(self):
        with self.d.client() as c:
            c.ehlo()
            c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<old@example.com>\r\nRSET\r\n"
                   b"MAIL FROM:<s2@example.org>\r\nRCPT TO:<new@example.com>\r\nNOOP\r\n")
            self.assertEqual([r.full() for r in c.replies(6)],
                             ["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.0.0 Ok",
                              "250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.0.0 Ok"])
            self.assertReply(c.cmd("DATA"), 354)
            c.send(msg(2) + b".\r\n")
            r = c.reply()
            self.assertReply(r, 250, "2.0.0 Ok: queued as ")
        env, _ = self.d.spool_message(queue_id_of(r))
        self.assertIn(b"new@example.com", env)
        self.assertNotIn(b"old@example.com", env)

    def test_two_bdat_transactions_in_one_write(self):
        m1, m2 = msg(3), msg(4)
        with self.d.client() as c:
            r = c.ehlo()
            self.assertIn("CHUNKING", r.lines)
            c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<a@example.com>\r\n"
                   b"BDAT %d LAST\r\n" % len(m1) + m1 +
                   b"MAIL FROM:<s@example.org>\r\nRCPT TO:<b@example.com>\r\n"
                   b"BDAT %d\r\n" % 10 + m2[:10] +
                   b"BDAT %d LAST\r\n" % (len(m2) - 10) + m2[10:] +
                   b"QUIT\r\n")
            rs = c.replies(8)
            self.assertEqual([r.code for r in rs], [250] * 7 + [221], rs)
            self.assertReply(rs[2], 250, "2.0.0 Ok: queued as ")
            self.assertReply(rs[6], 250, "2.0.0 Ok: queued as ")
            self.assertTrue(c.wait_closed(t(5)))
        q1, q2 = queue_id_of(rs[2]), queue_id_of(rs[6])
        self.assertNotEqual(q1, q2)
        self.assertEqual(self.wait_queued(self.d, 2), {q1, q2})
        e1, b1 = self.d.spool_message(q1)
        e2, b2 = self.d.spool_message(q2)
        self.assertTrue(b1.endswith(m1), b1)
        self.assertTrue(b2.endswith(m2), b2)
        self.assertIn(b"a@example.com", e1)
        self.assertIn(b"b@example.com", e2)

    def test_many_transactions_back_to_back(self):
        # 20 transactions, each "MAIL RCPT DATA" in one write: replies never get mixed up.
        ids = []
        with self.d.client() as c:
            c.ehlo()
            for i in range(20):
                c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<r%d@example.com>\r\nDATA\r\n" % i)
                self.assertEqual([r.code for r in c.replies(3)], [250, 250, 354])
                c.send(msg(100 + i) + b".\r\n")
                r = c.reply()
                self.assertReply(r, 250, "2.0.0 Ok: queued as ")
                ids.append(queue_id_of(r))
        self.assertEqual(len(set(ids)), 20)
        self.assertEqual(self.wait_queued(self.d, 20), set(ids))


if __name__ == "__main__":
    mtatest.main()
