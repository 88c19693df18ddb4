"""
test_log_share.py - the log terminal with a real Samba server on loopback
(smbserver.py): the mail log reaches maillog_filename on the share (directory
created) in Postfix's format and the configured timezone; the exact start-up
errors; maillog_filename empty and logs_enabled = no write nothing there; the
share stopped and restarted under load loses and doubles nothing while SMTP
goes on at full speed; rotation by size; pflogsumm counts the file read back
(received, delivered, deferred and bounced of a known load through a sink).
Not here: the record texts themselves (test_maillog.py).
"""

import collections
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import queue_id_of, t  # noqa: E402
from smbserver import SmbServer, free_port  # noqa: E402
import smtpsink  # noqa: E402

MSG = (b"From: s@example.org\r\nTo: a@example.com\r\nSubject: share\r\n"
       b"Message-ID: <share-%d@client.example>\r\n\r\nhello share\r\n")
CLIENT_RE = re.compile(r"\]: ([0-9A-Za-z]+): client=")
TS_RE = re.compile(r"^([A-Z][a-z]{2}) ([ 1-3]\d) (\d\d):(\d\d):(\d\d) ")
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def have_samba():
    return shutil.which("smbd") or os.path.exists("/usr/sbin/smbd")


@unittest.skipUnless(have_samba() and shutil.which("smbclient"), "samba (smbd, smbclient) not installed")
class LogShare(mtatest.MtaTestCase):
    def setUp(self):
        super().setUp()
        self.srv = SmbServer(rundir=os.path.join(self.tmp, "smbd"))
        os.makedirs(self.srv.dir, exist_ok=True)
        self.srv.start()
        # after the daemons' cleanup (cleanups run last-in first-out)
        self.addCleanup(self.srv.stop)

    def log_daemon(self, filename="/srv1_logs/maillog", start=True, **extra):
        settings = {"log_terminal": self.srv.url, "logs_enabled": "yes",
                    "maillog_filename": filename}
        settings.update(extra)
        return self.daemon(settings=settings, start=start)

    def send(self, d, n, first=0, rcpts=("a@example.com",)):
        """send - N messages in one session; returns their queue IDs in order."""
        ids = []
        with d.client() as c:
            c.ehlo()
            for i in range(first, first + n):
                self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
                for r in rcpts:
                    self.assertReply(c.cmd("RCPT TO:<%s>" % r), 250)
                self.assertReply(c.cmd("DATA"), 354)
                c.send((MSG % i) + b".\r\n")
                r = c.reply()
                self.assertReply(r, 250, "2.0.0 Ok: queued as ")
                ids.append(queue_id_of(r))
            c.cmd("QUIT")
        return ids

    def share_text(self, path="srv1_logs/maillog"):
        """share_text - the file as read back through SMB."""
        return self.srv.get(path).decode("utf-8", "replace")

    def wait_share(self, pattern, count, path="srv1_logs/maillog", timeout=None):
        """wait_share - until the file on the share has COUNT lines matching PATTERN."""
        rx = re.compile(pattern)
        full = os.path.join(self.srv.share_dir, path)
        deadline = time.monotonic() + (timeout or t(20))
        n = 0
        while time.monotonic() < deadline:
            try:
                with open(full, "rb") as f:
                    n = sum(1 for l in f.read().decode("utf-8", "replace").splitlines()
                            if rx.search(l))
            except OSError:
                n = 0
            if n >= count:
                return n
            time.sleep(0.1)
        self.fail("share %s: %d lines matching %r, wanted %d" % (path, n, pattern, count))

    def assertSuffixOfLocal(self, d, share_lines):
        """The share holds exactly the local maillog's records from its first one on:
        same order, nothing missing, nothing doubled."""
        local = d.maillog().splitlines()
        self.assertTrue(share_lines, "nothing on the share")
        self.assertIn(share_lines[0], local)
        k = local.index(share_lines[0])
        # not assertEqual on the lists: its difflib report over thousands of similar lines
        # ran past 100 s (a failure became a ctest timeout); show where they part instead
        theirs = local[k:]
        for i, (a, b) in enumerate(zip(share_lines, theirs)):
            if a != b:
                self.fail("share line %d differs from the local maillog:\n share: %s\n"
                          " local: %s\nshare lines around it:\n%s"
                          % (i, a, b, "\n".join(share_lines[max(0, i - 3):i + 4])))
        self.assertLessEqual(len(share_lines), len(theirs),
                             "extra lines on the share: %r" % share_lines[len(theirs):][:5])
        # and nothing logged after it is missing (the daemon has stopped)
        self.assertEqual(len(theirs), len(share_lines),
                         "records missing on the share: %r" % theirs[len(share_lines):][:5])

    # ------------------------------------------------------------------

    def test_records_reach_the_share_in_postfix_format(self):
        d = self.log_daemon()
        ids = self.send(d, 20)
        self.wait_share(r"\]: [0-9A-Za-z]+: client=", 20)
        self.assertTrue(os.path.isdir(os.path.join(self.srv.share_dir, "srv1_logs")))
        self.assertEqual(d.stop(), 0)
        text = self.share_text()
        lines = text.splitlines()
        for qid in ids:
            self.assertEqual(len([l for l in lines if ("]: %s: client=" % qid) in l]), 1, qid)
        # the pid: the daemon's, or a session's / delivery connection's pseudo-pid
        rx = re.compile(r"^[A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d %s postfix/[a-z]+\[\d+\]: "
                        % re.escape(mtatest.HOSTNAME))
        for l in lines:
            self.assertRegex(l, rx)
        self.assertSuffixOfLocal(d, lines)
        # smbclient sees the file too
        rc, out = self.srv.smbclient("ls srv1_logs/*")
        self.assertEqual(rc, 0)
        self.assertIn(b"maillog", out)

    def first_share_time(self, tz):
        d = self.log_daemon(filename="tz/maillog", timezone=tz)
        self.send(d, 1)
        self.wait_share(r"client=", 1, path="tz/maillog")
        self.assertEqual(d.stop(), 0)
        line = [l for l in self.share_text("tz/maillog").splitlines() if "client=" in l][-1]
        os.unlink(os.path.join(self.srv.share_dir, "tz/maillog"))
        m = TS_RE.match(line)
        self.assertIsNotNone(m, line)
        return m

    def test_timezone_changes_the_timestamps(self):
        from zoneinfo import ZoneInfo
        for tz in ("Europe/Berlin", "UTC"):
            m = self.first_share_time(tz)
            now = datetime.datetime.now(ZoneInfo(tz)).replace(tzinfo=None)
            stamp = datetime.datetime(now.year, MONTHS.index(m.group(1)) + 1, int(m.group(2)),
                                      int(m.group(3)), int(m.group(4)), int(m.group(5)))
            self.assertLess(abs((now - stamp).total_seconds()), 120,
                            "%s: record at %s, now %s" % (tz, stamp, now))

    def test_unknown_timezone_is_a_startup_error_naming_it(self):
        d = self.log_daemon(start=False, timezone="Mars/Olympus_Mons")
        with self.assertRaises(mtatest.StartError):
            d.start(timeout=t(10))
        self.assertNotEqual(d.proc.returncode, 0)
        self.assertIn("Mars/Olympus_Mons", d.stderr())

    def test_share_unreachable_at_start(self):
        d = self.daemon(settings={"log_terminal": "smb://127.0.0.1:%d/share" % free_port(),
                                  "logs_enabled": "yes", "maillog_filename": "maillog"},
                        start=False)
        with self.assertRaises(mtatest.StartError):
            d.start(timeout=t(30))
        self.assertNotEqual(d.proc.returncode, 0)
        self.assertIn("Error: Failed to mount log share.\n", d.stderr())

    def test_logs_enabled_without_terminal(self):
        d = self.daemon(settings={"logs_enabled": "yes", "maillog_filename": "maillog"},
                        start=False)
        with self.assertRaises(mtatest.StartError):
            d.start(timeout=t(10))
        self.assertNotEqual(d.proc.returncode, 0)
        self.assertIn("Error: Logs are enabled but 'log' terminal is not connected.\n", d.stderr())

    def test_empty_filename_and_logs_disabled_write_nothing(self):
        for extra in ({"maillog_filename": ""},
                      {"logs_enabled": "no", "maillog_filename": "/srv1_logs/maillog"}):
            d = self.daemon(settings=dict({"log_terminal": self.srv.url, "logs_enabled": "yes"},
                                          **extra))
            self.send(d, 3)
            d.wait_log(r"client=", count=3)
            self.assertEqual(d.stop(), 0)
            self.assertEqual(os.listdir(self.srv.share_dir), [], extra)

    def test_share_stopped_and_restarted_under_load(self):
        d = self.log_daemon()
        self.send(d, 5)
        self.wait_share(r"client=", 5)

        # load: one session after another, each a few messages, in a thread
        acked, stop, times = [], threading.Event(), []

        def load():
            i = 1000
            while not stop.is_set():
                t0 = time.monotonic()
                acked.extend(self.send(d, 5, first=i))
                times.append((t0, time.monotonic() - t0))
                i += 5

        th = threading.Thread(target=load, daemon=True)  # never keeps the process alive
        th.start()
        try:
            time.sleep(1.0)
            down_at = time.monotonic()
            self.srv.stop()  # SIGTERM, as an admin would
            time.sleep(4.0)
            # while it is down, the daemon says so
            metrics = self.fetch("/metrics")
            self.assertRegex(metrics, r"(?m)^mta_log_share_up 0$")
            stats = json.loads(self.fetch("/api/stats"))
            msgs = " ".join(stats.get("dashboard_messages", []))
            self.assertRegex(msgs, r"The mail log share is unreachable; \d+ records are waiting\.")
            up_at = time.monotonic()
            self.srv.start()
            time.sleep(1.0)
        finally:
            stop.set()
            th.join(t(30))
        self.assertFalse(th.is_alive(), "the load thread is still in an SMTP session after 30 s")
        # full speed while the share was away: no session waited on it. A session that waited
        # would take the share's 5 s timeout; the 1 s floor scales with the sanitizer slowdown
        # like every other wait here (under ASan one 5-message session took 1.15 s in CI)
        before = [dt for (t0, dt) in times if t0 < down_at]
        during = [dt for (t0, dt) in times if down_at + 0.5 < t0 < up_at]
        self.assertTrue(before and during, (len(before), len(during)))
        self.assertLess(max(during), max(t(1.0), 5 * max(before)), (max(before), max(during)))
        self.assertGreater(len(during) / (up_at - down_at - 0.5),
                           0.3 * len(before) / (down_at - times[0][0]))

        self.wait_share(r"\]: [0-9A-Za-z]+: client=", 5 + len(acked), timeout=t(60))
        self.assertEqual(d.stop(), 0)
        lines = self.share_text().splitlines()
        # one pass over the lines (an ID-by-ID scan is quadratic: 2,500 IDs took 9 s)
        clients = collections.Counter(m.group(1) for m in map(CLIENT_RE.search, lines) if m)
        for qid in acked:
            self.assertEqual(clients[qid], 1, qid)
        self.assertSuffixOfLocal(d, lines)
        self.assertTrue(any("warning: mail log share unreachable" in l for l in lines))

    def fetch(self, path):
        d = self.daemons[-1]
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (d.ui_port, path),
                                    timeout=t(10)) as r:
            return r.read().decode("utf-8", "replace")

    def test_rotation_by_size_keeps_every_record(self):
        d = self.log_daemon(maillog_rotate_size="4k", maillog_rotate_count="30")
        for k in range(6):
            self.send(d, 5, first=k * 5)
            time.sleep(0.2)
        logdir = os.path.join(self.srv.share_dir, "srv1_logs")
        # delivery attempts log too, so the client= lines may sit in any rotated file
        deadline = time.monotonic() + t(20)
        while time.monotonic() < deadline:
            n = 0
            for name in os.listdir(logdir) if os.path.isdir(logdir) else []:
                with open(os.path.join(logdir, name), "rb") as f:
                    n += f.read().count(b"client=")
            if n >= 30:
                break
            time.sleep(0.1)
        self.assertEqual(d.stop(), 0)
        names = sorted(os.listdir(logdir),
                       key=lambda n: -int(n.rsplit(".", 1)[1]) if "." in n else 0)
        self.assertGreater(len(names), 2, names)
        lines = []
        for n in names:
            with open(os.path.join(logdir, n), "rb") as f:
                data = f.read()
            self.assertLessEqual(len(data), 4096, n)
            lines += data.decode().splitlines()
        self.assertSuffixOfLocal(d, lines)

    def test_pflogsumm_counts_the_file(self):
        if not shutil.which("pflogsumm"):
            self.skipTest("pflogsumm not installed (apt-get install -y pflogsumm)")
        # a known load through a smart_relay sink: 20 accepted, 5 refused for good (5xx:
        # bounced, and the 5 notifications to s@example.org delivered), 3 refused for now
        # (4xx: deferred; the default backoff keeps it to one attempt in this test)
        sink = smtpsink.Sink("127.0.0.1", 0, rcpt_map={
            "bad@example.com": "550 5.1.1 <bad@example.com>: Recipient address rejected",
            "busy@example.com": "451 4.2.0 <busy@example.com>: try again later"}).start()
        self.addCleanup(sink.stop)
        d = self.log_daemon(syslog_name="relay7", smart_relay="[127.0.0.1]:%d" % sink.port)
        self.send(d, 20, rcpts=("good@example.com",))
        self.send(d, 5, first=20, rcpts=("bad@example.com",))
        self.send(d, 3, first=25, rcpts=("busy@example.com",))
        self.wait_share(r"client=", 28)
        self.wait_share(r"status=sent ", 25)
        self.wait_share(r"status=bounced ", 5)
        self.wait_share(r"status=deferred ", 3)
        self.assertEqual(len(sink.wait_messages(25, t(10))), 25)
        self.assertEqual(d.stop(), 0)
        path = os.path.join(self.tmp, "maillog.read-back")
        with open(path, "wb") as f:
            f.write(self.srv.get("srv1_logs/maillog"))
        out = subprocess.run(["pflogsumm", "--syslog-name=relay7", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=60).stdout.decode()

        def count(label):
            m = re.search(r"(?m)^\s*(\d+)\s+%s\b" % label, out)
            self.assertIsNotNone(m, "no %r in pflogsumm's output:\n%s" % (label, out[:3000]))
            return int(m.group(1))

        self.assertEqual(count("received"), 28, out[:3000])   # notifications are not "received"
        self.assertEqual(count("delivered"), 25, out[:3000])  # 20 + the 5 notifications
        self.assertEqual(count("deferred"), 3, out[:3000])
        self.assertEqual(count("bounced"), 5, out[:3000])
        self.assertRegex(out, r"(?m)^\s*3\s+deferred\s+\(3\s+deferrals\)")


class ShareComparison(unittest.TestCase):
    """LogShare's share-versus-local check itself (no servers): a wrong share must fail the
    test within seconds, whatever the shape of the difference."""

    def test_a_share_with_rewritten_records_is_reported_quickly(self):
        local = ["Dec  3 05:25:%02d mta.test.example mta/smtpd[23589]: 661B3FB3F%07X: "
                 "client=unknown[127.0.0.1]" % (i % 60, i) for i in range(4000)]
        share = local[:2000] + [l.replace("[23589]", "[23590]") for l in local[2000:3000]] \
            + local[3000:]

        class Daemon:
            def maillog(self):
                return "\n".join(local) + "\n"

        verdict = []

        def check():
            try:
                LogShare.assertSuffixOfLocal(self, Daemon(), share)
                verdict.append("passed")
            except AssertionError as e:
                verdict.append(str(e))

        th = threading.Thread(target=check, daemon=True)
        th.start()
        th.join(t(10))
        self.assertTrue(verdict, "no verdict within %.0f s" % t(10))
        self.assertIn("share line 2000 differs", verdict[0])


if __name__ == "__main__":
    mtatest.main()
