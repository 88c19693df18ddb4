"""
test_maillog.py - the mail log in Postfix's format, as log tools read it:
`Mon DD HH:MM:SS host syslog_name/service[pid]: ...` with connect, client=,
message-id=, from=/size=/nrcpt= (queue active), NOQUEUE reject and disconnect
records; syslog_name and timezone honoured; the same records on stderr.
Not here: delivery records (issue 3).
"""

import datetime
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import queue_id_of  # noqa: E402

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
LINE_RE = re.compile(r"^(?P<mon>[A-Z][a-z]{2}) (?P<day>[ 1-3]\d) (?P<time>\d\d:\d\d:\d\d) (?P<host>\S+) "
                     r"(?P<prog>[^\s/\[]+)/(?P<svc>[a-z0-9_-]+)\[(?P<pid>\d+)\]: (?P<text>.*)$")
MSG = (b"From: s@example.org\r\nTo: a@example.com\r\nSubject: log\r\n"
       b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <log-1@client.example>\r\n\r\nhello log\r\n")


def parse_ts(m, now):
    """parse_ts - the record's time as a naive datetime in the year of NOW."""
    mon = MONTHS.index(m.group("mon")) + 1
    hh, mm, ss = (int(x) for x in m.group("time").split(":"))
    return datetime.datetime(now.year, mon, int(m.group("day")), hh, mm, ss)


class MailLog(mtatest.MtaTestCase):
    def send_one(self, d, rcpts=("a@example.com", "b@example.com")):
        with d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
            for r in rcpts:
                self.assertReply(c.cmd("RCPT TO:<%s>" % r), 250)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(MSG + b".\r\n")
            r = c.reply()
            self.assertReply(r, 250, "2.0.0 Ok: queued as ")
            self.assertReply(c.cmd("QUIT"), 221)
        return queue_id_of(r)

    def test_postfix_records_with_syslog_name(self):
        d = self.daemon(overrides=["syslog_name=relay7"])
        qid = self.send_one(d)
        pid = d.pid()
        pfx = r"relay7/%s\[%d\]: "
        d.wait_log(pfx % ("smtpd", pid) + r"connect from unknown\[127\.0\.0\.1\]$")
        d.wait_log(pfx % ("smtpd", pid) + r"%s: client=unknown\[127\.0\.0\.1\]$" % qid)
        d.wait_log(pfx % ("cleanup", pid) + r"%s: message-id=<log-1@client\.example>$" % qid)
        lines = d.wait_log(pfx % ("qmgr", pid) +
                           r"%s: from=<s@example\.org>, size=(\d+), nrcpt=2 \(queue active\)$" % qid)
        size = int(re.search(r"size=(\d+)", lines[0]).group(1))
        _env, stored = d.spool_message(qid)
        self.assertGreaterEqual(size, len(MSG))
        self.assertLessEqual(abs(size - len(stored)), 2, "size= %d, stored message %d bytes"
                             % (size, len(stored)))
        d.wait_log(pfx % ("smtpd", pid) + r"disconnect from unknown\[127\.0\.0\.1\]( |$)")
        # every record has the Postfix syslog prefix with the new name
        for line in d.maillog().splitlines():
            m = LINE_RE.match(line)
            self.assertIsNotNone(m, "not a Postfix-format record: %r" % line)
            self.assertEqual(m.group("prog"), "relay7", line)
            self.assertEqual(int(m.group("pid")), pid, line)
        self.assertEqual(d.log_lines(r" mta/"), [])
        # the records also go to standard error
        self.assertRegex(d.stderr(), r"relay7/smtpd\[%d\]: %s: client=unknown\[127\.0\.0\.1\]" % (pid, qid))

    def test_default_syslog_name_and_order(self):
        d = self.daemon()
        qid = self.send_one(d, rcpts=("a@example.com",))
        d.wait_log(r"mta/qmgr\[\d+\]: %s: from=<s@example\.org>, size=\d+, nrcpt=1 \(queue active\)$" % qid)
        d.wait_log(r"mta/smtpd\[\d+\]: disconnect from unknown\[127\.0\.0\.1\]")
        recs = [l for l in d.maillog().splitlines() if qid in l]
        kinds = [re.search(r"%s: ([a-z-]+=)" % qid, l).group(1) for l in recs]
        self.assertEqual(kinds[:3], ["client=", "message-id=", "from="], recs)

    def test_reject_record(self):
        d = self.daemon(overrides=["syslog_name=relay7"])
        with d.client(source="127.0.0.2") as c:
            c.cmd("HELO helo.example")
            c.cmd("MAIL FROM:<s@example.org>")
            self.assertReply(c.cmd("RCPT TO:<x@y.example>"), 554, "5.7.1 <x@y.example>: Relay access denied")
        d.wait_log(r"relay7/smtpd\[%d\]: NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.2\]: 554 5\.7\.1 "
                   r"<x@y\.example>: Relay access denied; from=<s@example\.org> to=<x@y\.example> "
                   r"proto=SMTP helo=<helo\.example>$" % d.pid())

    def test_timestamp_format(self):
        d = self.daemon()
        self.send_one(d)
        d.wait_log(r"disconnect from")
        now = datetime.datetime.now()
        for line in d.maillog().splitlines():
            m = LINE_RE.match(line)
            self.assertIsNotNone(m, "not a Postfix-format record: %r" % line)
            self.assertIn(m.group("mon"), MONTHS)
            if int(m.group("day")) < 10:
                self.assertEqual(m.group("day")[0], " ", "day not space-padded: %r" % line)
            ts = parse_ts(m, now)
            self.assertLess(abs((ts - now).total_seconds()), 120, "timestamp far from now: %r" % line)

    @unittest.skipUnless(os.path.exists("/usr/share/zoneinfo/Asia/Kathmandu"), "no tz database")
    def test_timezone_setting(self):
        d = self.daemon(settings={"timezone": "Asia/Kathmandu"}, env={"TZ": "UTC"})
        self.send_one(d)
        lines = d.wait_log(r"disconnect from")
        m = LINE_RE.match(lines[-1])
        self.assertIsNotNone(m, lines[-1])
        utcnow = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        ktm = utcnow + datetime.timedelta(hours=5, minutes=45)
        ts = parse_ts(m, ktm)
        self.assertLess(abs((ts - ktm).total_seconds()), 120,
                        "timestamp %s is not Asia/Kathmandu time (%s)" % (m.group(0)[:15], ktm))


if __name__ == "__main__":
    mtatest.main()
