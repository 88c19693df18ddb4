"""
test_crash_recovery.py - durability as a user sees it: under a load of parallel
smtplib senders, kill -9 (or SIGTERM) the daemon, restart it on the same data
volume, and every queue ID that was acknowledged with 250 is in the spool and
parseable; leftover temp files are purged, unreadable queue files quarantined,
and the daemon accepts mail again.
Not here: the spool's unit tests (tests/unit/test_spool_*.c).
"""

import os
import smtplib
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import queue_id_of, t  # noqa: E402

THREADS = 8


def message(tid, n):
    return (("From: load%d@example.org\r\nTo: sink@example.com\r\nSubject: load %d/%d\r\n"
             "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <load-%d-%d@client.example>\r\n"
             "\r\n" % (tid, tid, n, tid, n)).encode() + (b"marker %d/%d " % (tid, n)) * 200 + b"\r\n")


class Load(mtatest.SenderThreads):
    """THREADS senders, each sending messages over reused connections until stopped."""

    def __init__(self, d):
        super().__init__(d, THREADS)  # acked: queue ID -> (tid, n)
        self.errors = []

    def run(self, tid):
        n = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.d.smtp_port, local_hostname="client.example",
                                  timeout=t(10)) as s:
                    s.ehlo()
                    for _ in range(20):
                        if self.stop.is_set():
                            break
                        n += 1
                        code, _ = s.mail("load%d@example.org" % tid)
                        if code != 250:
                            break
                        code, _ = s.rcpt("sink@example.com")
                        if code != 250:
                            break
                        code, text = s.data(message(tid, n))
                        if code == 250:
                            qid = queue_id_of(text.decode())
                            with self.lock:
                                self.acked[qid] = (tid, n)
                        else:
                            break
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)  # the daemon is gone or going: try again until stopped


class CrashRecovery(mtatest.MtaTestCase):
    def run_load_until(self, d, min_acked, seconds):
        load = Load(d)
        load.start()
        deadline = time.monotonic() + t(seconds)
        while time.monotonic() < deadline and load.count() < min_acked:
            time.sleep(0.05)
        return load

    def check_all_present(self, d, acked):
        have = d.spool_files()
        missing = sorted(set(acked) - set(have))
        self.assertEqual(missing, [], "%d of %d acknowledged messages lost after restart"
                         % (len(missing), len(acked)))
        for qid, (tid, n) in acked.items():
            env, msg = d.spool_message(qid)  # parseable: version line .. end, then the message
            self.assertIn(b"load%d@example.org" % tid, env)
            self.assertIn(b"sink@example.com", env)
            self.assertIn(b"Message-ID: <load-%d-%d@client.example>" % (tid, n), msg)
            self.assertTrue(msg.endswith((b"marker %d/%d " % (tid, n)) * 200 + b"\r\n"),
                            "message %s truncated" % qid)

    def accepts_mail(self, d):
        with d.smtp() as s:
            s.ehlo()
            self.assertEqual(s.mail("after@example.org")[0], 250)
            self.assertEqual(s.rcpt("r@example.com")[0], 250)
            code, text = s.data(message(99, 1))
            self.assertEqual(code, 250, text)
            qid = queue_id_of(text.decode())
        self.assertIn(qid, self.wait_queued(d, 1))

    def test_kill9_mid_load(self):
        d = self.daemon()
        load = self.run_load_until(d, 150, 6)
        # let the load run a moment longer so commits are in flight, then crash
        time.sleep(0.3)
        d.kill()
        load.finish()
        acked = dict(load.acked)
        sys.stderr.write("[kill -9 after %d acknowledged messages] " % len(acked))
        self.assertGreater(len(acked), 20, "load too small to be meaningful")
        # leftovers a crash may leave: a temp file and an unreadable queue file
        tmpdir = os.path.join(d.data_volume, "tmp")
        os.makedirs(tmpdir, exist_ok=True)
        planted_tmp = os.path.join(tmpdir, "0000000000001001")
        with open(planted_tmp, "wb") as f:
            f.write(b"MTA-QUEUE 1\nhalf-written")
        some = sorted(d.spool_files().values())[0]
        bad_id = "000000000000200" + os.path.basename(some)[-1]  # same hash directory
        bad_path = os.path.join(os.path.dirname(some), bad_id)
        with open(bad_path, "wb") as f:
            f.write(b"this is not a queue file\x00\xff")
        d.start()
        self.check_all_present(d, acked)
        self.assertFalse(os.path.exists(planted_tmp), "leftover tmp file not purged")
        self.assertNotIn(bad_id, d.spool_files(), "unreadable file left in the queue")
        corrupt = []
        for root, _d, files in os.walk(os.path.join(d.data_volume, "corrupt")):
            for fn in files:
                with open(os.path.join(root, fn), "rb") as f:
                    corrupt.append(f.read())
        self.assertIn(b"this is not a queue file\x00\xff", corrupt,
                      "unreadable queue file not quarantined in corrupt/")
        self.accepts_mail(d)
        # nothing acknowledged before the crash got lost by the second start either
        self.check_all_present(d, acked)

    def test_kill9_twice(self):
        d = self.daemon()
        acked = {}
        for _ in range(2):
            load = self.run_load_until(d, 60, 5)
            d.kill()
            load.finish()
            self.assertGreater(len(load.acked), 10, "load too small to be meaningful")
            acked.update(load.acked)
            d.start()
        self.check_all_present(d, acked)
        self.accepts_mail(d)

    def test_sigterm_mid_load(self):
        d = self.daemon()
        load = self.run_load_until(d, 100, 6)
        rc = d.stop(timeout=t(20))
        load.finish()
        self.assertEqual(rc, 0, "mtad did not exit 0 on SIGTERM under load; stderr:\n" + d.stderr()[-3000:])
        acked = dict(load.acked)
        self.assertGreater(len(acked), 20)
        # the spool as the stopped daemon left it already has everything
        missing = set(acked) - set(d.spool_files())
        self.assertEqual(missing, set(), "acknowledged messages missing after SIGTERM")
        d.start()
        self.check_all_present(d, acked)
        self.accepts_mail(d)

    def test_sigterm_closes_idle_sessions_with_421(self):
        d = self.daemon()
        with d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
            d.proc.send_signal(15)
            r = c.reply(t(10))
            self.assertEqual(r.code, 421, r)
            self.assertRegex(r.lines[-1], r"^4\.3\.2 ")
            self.assertTrue(c.wait_closed(t(5)))
        self.assertEqual(d.proc.wait(t(15)), 0, d.stderr()[-3000:])

    def test_second_daemon_on_same_volume_refused(self):
        d = self.daemon()
        other = mtatest.Daemon(self.tmp, name="other")
        other.data_volume = d.data_volume
        self.daemons.append(other)
        with self.assertRaises(mtatest.StartError):
            other.start(timeout=t(5))
        self.assertNotEqual(other.proc.returncode, 0)
        self.assertIn(d.data_volume, other.stderr())
        # the first one is unharmed
        self.accepts_mail(d)


if __name__ == "__main__":
    mtatest.main()
