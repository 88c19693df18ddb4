"""
test_smtp_data.py - what happens to message content: dot-stuffing round trip,
8-bit bytes kept exactly, SMTPUTF8 addresses, BDAT chunks stored byte-exact,
Message-ID/Date added when missing, the hop count limit.
Not here: end-of-data smuggling (test_smtp_smuggling.py), size limits.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import message_body, message_headers, queue_id_of  # noqa: E402

HDRS = (b"From: s@example.org\r\nTo: r@example.com\r\nSubject: data\r\n"
        b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <data-1@client.example>\r\n")


def dot_stuff(content):
    out = []
    for line in content.split(b"\r\n"):
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out)


class SmtpData(mtatest.MtaTestCase):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(settings={"hopcount_limit": "5"})

    def send_data(self, content, mail="MAIL FROM:<s@example.org>", rcpt="RCPT TO:<r@example.com>"):
        """send_data - one DATA transaction with CONTENT (CRLF lines, not yet
        dot-stuffed); returns the reply to end-of-data."""
        with self.d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd(mail), 250)
            self.assertReply(c.cmd(rcpt), 250)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(dot_stuff(content) + b".\r\n")
            r = c.reply()
            c.cmd("QUIT")
            return r

    def stored(self, reply):
        self.assertReply(reply, 250, "2.0.0 Ok: queued as ")
        return self.d.spool_message(queue_id_of(reply))

    def test_dot_stuffing_round_trip(self):
        content = HDRS + (b"\r\n.\r\n..\r\n...leading dots\r\n. space\r\nmid.dle\r\n"
                          b".\r\n.end\r\n")
        env, m = self.stored(self.send_data(content))
        self.assertTrue(m.endswith(content), "stored message differs:\n%r" % m)
        self.assertEqual(message_body(m), message_body(content))

    def test_eight_bit_body_byte_exact(self):
        body = bytes(b for b in range(256) if b not in (10, 13)) + b"\r\n"
        body += "Grüße, ünïcödé, 日本語\r\n".encode("utf-8") + b"\xff\xfe\x80\x00 nul\r\n"
        content = HDRS + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
        env, m = self.stored(self.send_data(content, mail="MAIL FROM:<s@example.org> BODY=8BITMIME"))
        self.assertEqual(message_body(m), body)

    def test_smtputf8_address(self):
        sender = "jösé@exämple.org"
        rcpt = "用户@例子.广告"
        content = ("From: %s\r\nTo: %s\r\nSubject: ütf8\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
                   "Message-ID: <u8@client.example>\r\n\r\nbody\r\n" % (sender, rcpt)).encode()
        r = self.send_data(content, mail="MAIL FROM:<%s> SMTPUTF8" % sender, rcpt="RCPT TO:<%s>" % rcpt)
        env, m = self.stored(r)
        fields = self.d.envelope(queue_id_of(r))
        self.assertEqual(fields["sender"], [[sender.encode()]])
        self.assertEqual([v[-1] for v in fields["rcpt"]], [rcpt.encode()])
        self.assertEqual(fields["smtputf8"], [[b"1"]])
        self.assertTrue(m.endswith(content))
        self.d.wait_log(r": %s: from=<%s>, size=\d+, nrcpt=1 \(queue active\)"
                        % (queue_id_of(r), re.escape(sender)))

    def test_utf8_address_without_smtputf8(self):
        with self.d.client() as c:
            c.ehlo()
            r = c.cmd("MAIL FROM:<jösé@exämple.org>")
            self.assertGreaterEqual(r.code, 500, "UTF-8 sender accepted without SMTPUTF8: %s" % r)

    def test_bdat_chunks_byte_exact(self):
        content = HDRS + b"\r\n" + b"line with CRLF\r\n.\r\n..dots are not stuffed in BDAT\r\n" \
            + bytes(range(128, 256)) + b"\r\nend\r\n"
        cuts = [0, 7, 8, 60, 61, len(content) - 3, len(content)]
        with self.d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org> BODY=8BITMIME"), 250)
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
            for a, b in zip(cuts, cuts[1:]):
                c.send(b"BDAT %d\r\n" % (b - a) + content[a:b])
                self.assertReply(c.reply(), 250, "2.0.0 Ok")
            c.send(b"BDAT 0 LAST\r\n")
            r = c.reply()
            self.assertReply(r, 250, "2.0.0 Ok: queued as ")
            # the session goes on: a plain one-chunk message after it
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
            c.send(b"BDAT %d LAST\r\n" % len(content) + content)
            r2 = c.reply()
            self.assertReply(r2, 250, "2.0.0 Ok: queued as ")
        for rr in (r, r2):
            env, m = self.stored(rr)
            self.assertTrue(m.endswith(content), "stored BDAT message differs:\n%r" % m)

    def test_bdat_then_data_is_refused(self):
        with self.d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
            c.send(b"BDAT 5\r\nabcde")
            self.assertReply(c.reply(), 250)
            r = c.cmd("DATA")
            self.assertEqual(r.code // 100, 5, r)
        self.assertEqual(self.d.queued_ids(), set())

    def test_message_id_and_date_added(self):
        content = b"From: s@example.org\r\nTo: r@example.com\r\nSubject: bare\r\n\r\nno id, no date\r\n"
        r = self.send_data(content)
        env, m = self.stored(r)
        hdrs = message_headers(m)
        self.assertRegex(hdrs, rb"(?im)^Message-ID: <[^>@]+@[^>]+>\r$")
        self.assertRegex(hdrs, rb"(?im)^Date: \w{3}, [ 0-9]?\d \w{3} \d{4} \d\d:\d\d:\d\d [-+]\d{4}")
        self.assertEqual(message_body(m), b"no id, no date\r\n")
        mid = re.search(rb"(?im)^Message-ID: (<[^>]+>)", hdrs).group(1).decode()
        self.d.wait_log(r": %s: message-id=%s$" % (queue_id_of(r), re.escape(mid)))

    def test_existing_message_id_kept(self):
        r = self.send_data(HDRS + b"\r\nbody\r\n")
        env, m = self.stored(r)
        self.assertEqual(len(re.findall(rb"(?im)^Message-ID:", m)), 1)
        self.assertEqual(len(re.findall(rb"(?im)^Date:", m)), 1)
        self.d.wait_log(r": %s: message-id=<data-1@client\.example>$" % queue_id_of(r))

    def test_hop_count_limit(self):
        ok = b"".join(b"Received: from h%d.example by x.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % i
                      for i in range(2)) + HDRS + b"\r\nfew hops\r\n"
        self.stored(self.send_data(ok))
        loop = b"".join(b"Received: from h%d.example by x.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % i
                        for i in range(10)) + HDRS + b"\r\nlooping\r\n"
        r = self.send_data(loop)
        self.assertEqual(r.code, 554, r)
        self.assertRegex(r.lines[-1], r"^5\.4\.\d ")
        self.assertEqual(len(self.d.queued_ids()), 1)


if __name__ == "__main__":
    mtatest.main()
