"""
test_maillog.py - the mail log in Postfix's format, as log tools read it:
`Mon DD HH:MM:SS host syslog_name/service[pid]: ...` with connect, client=,
message-id=, from=/size=/nrcpt= (queue active), NOQUEUE reject and disconnect
records; syslog_name and timezone honoured; the same records on stderr.
Each SMTP session and delivery connection has its own pseudo-pid, so that
pflogsumm --smtpd-stats (which pairs connect/disconnect by pid) counts every
session; refused deliveries say relay=none as Postfix's do. syslog_name's
default is postfix (the log tools match only postfix/...); mta/ when set.
Not here: delivery records (issue 3); the log tools themselves (test_log_tools.py).
"""

import datetime
import os
import re
import shutil
import subprocess
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
        # the session's smtpd lines carry its own pseudo-pid, never the daemon's
        line = d.wait_log(r"relay7/smtpd\[\d+\]: %s: client=unknown\[127\.0\.0\.1\]$" % qid)[0]
        spid = int(LINE_RE.match(line).group("pid"))
        self.assertNotEqual(spid, pid, line)
        self.assertGreater(spid, 4194304, "pseudo-pid within the range of real pids: " + line)
        d.wait_log(pfx % ("smtpd", spid) + r"connect from unknown\[127\.0\.0\.1\]$")
        d.wait_log(pfx % ("cleanup", pid) + r"%s: message-id=<log-1@client\.example>$" % qid)
        lines = d.wait_log(pfx % ("qmgr", pid) +
                           r"%s: from=<s@example\.org>, size=(\d+), nrcpt=2 \(queue active\)$" % qid)
        size = int(re.search(r"size=(\d+)", lines[0]).group(1))
        _env, stored = d.spool_message(qid)
        self.assertGreaterEqual(size, len(MSG))
        self.assertLessEqual(abs(size - len(stored)), 2, "size= %d, stored message %d bytes"
                             % (size, len(stored)))
        d.wait_log(pfx % ("smtpd", spid) + r"disconnect from unknown\[127\.0\.0\.1\]( |$)")
        # every record has the Postfix syslog prefix with the new name; the records
        # not tied to a session or a delivery connection keep the real pid
        for line in d.maillog().splitlines():
            m = LINE_RE.match(line)
            self.assertIsNotNone(m, "not a Postfix-format record: %r" % line)
            self.assertEqual(m.group("prog"), "relay7", line)
            if m.group("svc") == "smtpd":
                if "connect from" in m.group("text") and int(m.group("pid")) != spid:
                    continue  # the harness's start-up probe: a session of its own
                self.assertEqual(int(m.group("pid")), spid, line)
            elif m.group("svc") not in ("smtp",):
                self.assertEqual(int(m.group("pid")), pid, line)
        self.assertEqual(d.log_lines(r" mta/"), [])
        # the records also go to standard error
        self.assertRegex(d.stderr(), r"relay7/smtpd\[%d\]: %s: client=unknown\[127\.0\.0\.1\]" % (spid, qid))

    def test_default_syslog_name_and_order(self):
        """syslog_name's default is Postfix's: prometheus-postfix-exporter and mtail's
        Postfix program read postfix/... lines only."""
        d = self.daemon()
        qid = self.send_one(d, rcpts=("a@example.com",))
        d.wait_log(r" postfix/qmgr\[\d+\]: %s: from=<s@example\.org>, size=\d+, nrcpt=1 "
                   r"\(queue active\)$" % qid)
        d.wait_log(r" postfix/smtpd\[\d+\]: disconnect from unknown\[127\.0\.0\.1\]")
        for line in d.maillog().splitlines():
            self.assertEqual(LINE_RE.match(line).group("prog"), "postfix", line)
        recs = [l for l in d.maillog().splitlines() if qid in l]
        kinds = [re.search(r"%s: ([a-z-]+=)" % qid, l).group(1) for l in recs]
        self.assertEqual(kinds[:3], ["client=", "message-id=", "from="], recs)

    def test_syslog_name_mta(self):
        """An administrator may keep the old name: syslog_name = mta."""
        d = self.daemon(settings={"syslog_name": "mta"})
        qid = self.send_one(d, rcpts=("a@example.com",))
        d.wait_log(r" mta/smtpd\[\d+\]: %s: client=unknown\[127\.0\.0\.1\]$" % qid)
        self.assertEqual(d.log_lines(r" postfix/"), [])

    def test_master_start_stop(self):
        """master's start and stop lines as Postfix's master writes them: the
        configuration directory, and the signal."""
        d = self.daemon()
        d.wait_log(r" postfix/master\[%d\]: daemon started -- version \S+, configuration %s$"
                   % (d.pid(), re.escape(os.path.dirname(d.config_path))))
        pid = d.pid()
        self.assertEqual(d.stop(), 0)
        d.wait_log(r" postfix/master\[%d\]: terminating on signal 15$" % pid)

    def test_reject_record(self):
        d = self.daemon(overrides=["syslog_name=relay7"])
        with d.client(source="127.0.0.2") as c:
            c.cmd("HELO helo.example")
            c.cmd("MAIL FROM:<s@example.org>")
            self.assertReply(c.cmd("RCPT TO:<x@y.example>"), 554, "5.7.1 <x@y.example>: Relay access denied")
        d.wait_log(r"relay7/smtpd\[\d+\]: NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.2\]: 554 5\.7\.1 "
                   r"<x@y\.example>: Relay access denied; from=<s@example\.org> to=<x@y\.example> "
                   r"proto=SMTP helo=<helo\.example>$")

    def smtpd_pids(self, d, pattern):
        """smtpd_pids - the pids of the smtpd records matching PATTERN."""
        return [int(LINE_RE.match(l).group("pid")) for l in d.log_lines(r"/smtpd\[\d+\]: " + pattern)]

    def mixed_run(self, d, n=6):
        """mixed_run - N overlapping sessions: all connect first, then each sends one
        message (session 1 is rejected at MAIL, session 2 leaves without QUIT after
        END-OF-MESSAGE), then they close in reverse order. Returns the number of
        sessions in the log before (the harness's readiness probe: greeting, QUIT)."""
        d.wait_log(r"\]: disconnect from unknown\[127\.0\.0\.1\] quit=1 commands=1$")
        probes = len(d.log_lines(r"\]: connect from "))
        clients = [d.client() for _ in range(n)]
        try:
            d.wait_log(r"\]: connect from unknown\[127\.0\.0\.1\]$", count=probes + n)
            for i, c in enumerate(clients):
                c.ehlo("c%d.example" % i)
            for i, c in enumerate(clients):
                if i == 1:  # rejected at MAIL (SIZE over message_size_limit)
                    self.assertReply(c.cmd("MAIL FROM:<s1@example.org> SIZE=200000"), 552)
                    continue
                self.assertReply(c.cmd("MAIL FROM:<s%d@example.org>" % i), 250)
                self.assertReply(c.cmd("RCPT TO:<r%d@example.com>" % i), 250)
                self.assertReply(c.cmd("DATA"), 354)
                c.send(MSG + b".\r\n")
                self.assertReply(c.reply(), 250, "2.0.0 Ok: queued as ")
            for i in reversed(range(n)):
                if i != 2:
                    self.assertReply(clients[i].cmd("QUIT"), 221)
                clients[i].close()
        finally:
            for c in clients:
                c.close()
        d.wait_log(r"\]: disconnect from unknown\[127\.0\.0\.1\]", count=probes + n)
        return probes

    def test_concurrent_sessions_have_their_own_pids(self):
        """Each session's lines share one pid, no two sessions share one, none is the
        daemon's: as Postfix's one smtpd process per session."""
        d = self.daemon(settings={"message_size_limit": "100000"})
        n = 6
        probes = self.mixed_run(d, n)
        connects = self.smtpd_pids(d, r"connect from ")
        disconnects = self.smtpd_pids(d, r"disconnect from ")
        self.assertEqual(len(set(connects)), probes + n, d.maillog())
        self.assertEqual(sorted(connects), sorted(disconnects), d.maillog())
        self.assertNotIn(d.pid(), connects)
        # the session's other lines carry its pid; one that leaves without QUIT after
        # its message was answered is no fault: Postfix logs no "lost connection after
        # END-OF-MESSAGE" (and exporter/mtail patterns could not count it: \w+)
        self.assertEqual(d.log_lines(r"lost connection after"), [], d.maillog())
        left = d.wait_log(r"/smtpd\[\d+\]: disconnect from unknown\[127\.0\.0\.1\] ehlo=1 "
                          r"mail=1 rcpt=1 data=1 commands=4$")
        self.assertIn(int(LINE_RE.match(left[0]).group("pid")), connects)
        rej = d.wait_log(r"/smtpd\[\d+\]: NOQUEUE: reject: MAIL from unknown\[127\.0\.0\.1\]: 552 5\.3\.4 "
                         r"Message size exceeds fixed limit; proto=ESMTP helo=<c1\.example>$")
        self.assertIn(int(LINE_RE.match(rej[0]).group("pid")), connects)
        clients = d.log_lines(r"/smtpd\[\d+\]: \w+: client=")
        self.assertEqual(len(clients), n - 1)
        for line in clients:
            self.assertIn(int(LINE_RE.match(line).group("pid")), connects, line)

    @unittest.skipUnless(shutil.which("pflogsumm"), "pflogsumm is not installed")
    def test_pflogsumm_smtpd_stats_counts_every_session(self):
        """pflogsumm --smtpd-stats pairs "connect from" with "disconnect from" by pid."""
        d = self.daemon(settings={"message_size_limit": "100000"})
        n = 6
        probes = self.mixed_run(d, n)
        out = subprocess.run(["pflogsumm", "--smtpd-stats", d.maillog_path],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False,
                             timeout=60).stdout.decode("utf-8", "replace")
        m = re.search(r"^\s*(\d+)\s+connections\b", out, re.M)
        self.assertIsNotNone(m, out)
        self.assertEqual(int(m.group(1)), probes + n, out)

    def test_refused_delivery_says_relay_none(self):
        """A delivery that never got a connection logs relay=none (Postfix), under the
        delivery connection's own pid."""
        d = self.daemon()
        qid = self.send_one(d, rcpts=("a@example.com",))
        line = d.wait_log(r"/smtp\[\d+\]: %s: to=<a@example\.com>, relay=\S+, .*dsn=4\.4\.1, "
                          r"status=deferred \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: "
                          r"Connection refused\)$" % (qid, d.hold_port))[0]
        self.assertIn(", relay=none, ", line)
        self.assertNotEqual(int(LINE_RE.match(line).group("pid")), d.pid(), line)

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
