"""
test_data_volume_faults.py - the data volume fails under a running mtad: it fills
up (queue_minfree, and the real ENOSPC of a write with queue_minfree = 0), it is
remounted read-only, it vanishes (renamed away). Each time the client gets a 4xx
(Postfix's `452 4.3.1 Insufficient system storage` for a full volume, `451 4.3.0`
for one that cannot be written), the mail log says why, nothing half-written stays
in tmp/ or queue/, the daemon keeps running, and intake resumes by itself once the
volume is back.
The volume is a small tmpfs the test mounts in its temp directory (as root); with
no permission to mount the tests skip (MTA_REQUIRE_ALL=1 turns that into a failure).
Not here: the free-space figure and the dashboard messages (test_http_free_space.py,
which fakes the figure with MTA_TEST_FREE_BYTES), kill -9 (test_kill9_loop.py).
"""

import errno
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import queue_id_of, t  # noqa: E402

VOLUME_MIB = 8
SMALL = (b"Subject: small\r\nMessage-ID: <small@client.example>\r\n\r\n" + b"s" * 2000 + b"\r\n")
# over the spool's 64 KiB in-memory threshold: streamed to tmp/ID.body while DATA runs
LARGE = (b"Subject: large\r\nMessage-ID: <large@client.example>\r\n\r\n"
         + (b"L" * 998 + b"\r\n") * 300)


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True)


class DataVolumeFaults(mtatest.MtaTestCase):

    # -- the volume --
    def mount_volume(self, mode=0o700, subdir=True):
        """mount_volume - a VOLUME_MIB tmpfs at TMP/vol (unmounted at cleanup); the data
        volume is its subdirectory data/ (so that it can be renamed away), or with SUBDIR
        False the mount point itself."""
        self.vol = os.path.join(self.tmp, "vol")
        os.mkdir(self.vol)
        r = run("mount", "-t", "tmpfs", "-o", "size=%dm,mode=%o" % (VOLUME_MIB, mode), "tmpfs",
                self.vol)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs for the data volume (needs root): %s"
                          % (r.stderr.strip() or r.returncode))
        # registered before any daemon: cleanups run in reverse, so the daemons stop first
        self.addCleanup(run, "umount", "-l", self.vol)
        self.data = os.path.join(self.vol, "data") if subdir else self.vol
        self.filler_path = os.path.join(self.vol, "filler")
        return self.data

    def fill(self):
        """fill - write a filler file until the volume is full (ENOSPC)."""
        chunk = b"\0" * 65536
        with open(self.filler_path, "ab") as f:
            while True:
                try:
                    f.write(chunk)
                    f.flush()
                except OSError as e:
                    self.assertEqual(e.errno, errno.ENOSPC, e)
                    break
        # the last partial chunk: fill byte by byte-ish down to nothing
        for size in (4096, 512, 1):
            try:
                with open(self.filler_path, "ab") as f:
                    while True:
                        f.write(b"\0" * size)
                        f.flush()
            except OSError as e:
                self.assertEqual(e.errno, errno.ENOSPC, e)
        st = os.statvfs(self.vol)
        self.assertLess(st.f_bavail * st.f_frsize, 4096, "the volume did not fill up")

    def unfill(self):
        os.unlink(self.filler_path)

    def daemon_on_volume(self, settings=None, env=None, **mount):
        data = self.mount_volume(**mount)
        s = {"queue_minfree": "0"}
        s.update(settings or {})
        d = self.daemon(s, env=env, start=False)
        d.data_volume = data
        d.start()
        return d

    # -- observations --
    def send(self, d, body, expect_code):
        """send - one message through smtplib-free raw SMTP; returns the end-of-data reply
        (MAIL and RCPT must be accepted)."""
        with d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(body + b".\r\n")
            r = c.reply(t(20))
            self.assertEqual(r.code, expect_code, "end of data: %s" % r)
            # the session goes on after a 4xx at end of data
            self.assertReply(c.cmd("RSET"), 250)
            return r

    def mail_reply(self, d):
        with d.client() as c:
            c.ehlo()
            return c.cmd("MAIL FROM:<s@example.org>")

    def wait_mail_reply(self, d, code, seconds=5):
        """wait_mail_reply - MAIL gets CODE within SECONDS (the daemon measures the volume
        once a second); returns that reply."""
        deadline = time.monotonic() + t(seconds)
        while True:
            r = self.mail_reply(d)
            if r.code == code or time.monotonic() > deadline:
                return r
            time.sleep(0.1)

    def resumes(self, d, before):
        """resumes - within a few seconds a message is accepted again (250 + queued)."""
        deadline = time.monotonic() + t(6)
        while True:
            with d.client() as c:
                c.ehlo()
                r = c.cmd("MAIL FROM:<s@example.org>")
                if r.code == 250:
                    self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
                    self.assertReply(c.cmd("DATA"), 354)
                    c.send(SMALL + b".\r\n")
                    r = c.reply(t(20))
                    if r.code == 250:
                        qid = queue_id_of(r)
                        self.assertIn(qid, d.queued_ids() - before)
                        return qid
            if time.monotonic() > deadline:
                self.fail("intake did not resume: last reply %s; log:\n%s"
                          % (r, d.maillog()[-3000:]))
            time.sleep(0.2)

    def nothing_left(self, d, queued_before):
        """nothing_left - no message leftovers in tmp/ (pool files aside) and no new queue
        file; allows the abort's removal a moment (it runs on a worker)."""
        deadline = time.monotonic() + t(3)
        while d.tmp_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(d.tmp_files(), [], "half-written files left in tmp/")
        self.assertEqual(d.queued_ids(), queued_before, "a refused message is in queue/")
        for root, _dirs, files in os.walk(d.queue_dir()):
            for fn in files:
                self.assertFalse(fn.endswith(".tmp"), "temp file %s in queue/" % fn)

    def alive(self, d):
        self.assertTrue(d.running(), "mtad died; stderr:\n" + d.stderr()[-3000:])

    # -- the tests --
    def test_full_volume_refused_with_452_and_resumes(self):
        """queue_minfree = 0: a volume that fills while DATA runs gives 452 4.3.1 at end of
        data (small and streamed messages), then 452 at MAIL; removing the filler lets the
        next message in without a restart."""
        d = self.daemon_on_volume()
        before = d.queued_ids()
        for body in (SMALL, LARGE):
            with d.client() as c:
                c.ehlo()
                self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
                self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
                self.assertReply(c.cmd("DATA"), 354)
                self.fill()
                c.send(body + b".\r\n")
                r = c.reply(t(20))
                self.assertReply(r, 452, "4.3.1 Insufficient system storage")
                self.assertReply(c.cmd("RSET"), 250)
            self.alive(d)
            self.nothing_left(d, before)
            self.unfill()
        self.fill()
        r = self.wait_mail_reply(d, 452)
        self.assertReply(r, 452, "4.3.1 Insufficient system storage")
        self.nothing_left(d, before)
        self.unfill()
        self.resumes(d, before)
        self.alive(d)

    def test_queue_minfree_on_a_real_volume(self):
        """queue_minfree = 4 MiB on the 8 MiB volume: MAIL with a SIZE= that needs more than
        1.5 x its size of what is left above queue_minfree gets 452 4.3.1 (Postfix's rule);
        a filler that takes the volume below queue_minfree makes every MAIL get it, and
        removing the filler lets mail in again without a restart."""
        d = self.daemon_on_volume({"queue_minfree": str(4 << 20)})
        before = d.queued_ids()
        with d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org> SIZE=%d" % (3 << 20)), 452,
                             "4.3.1 Insufficient system storage")
            self.assertReply(c.cmd("MAIL FROM:<s@example.org> SIZE=%d" % (1 << 20)), 250)
        with open(self.filler_path, "wb") as f:
            f.write(b"\0" * (5 << 20))
        r = self.wait_mail_reply(d, 452)
        self.assertReply(r, 452, "4.3.1 Insufficient system storage")
        d.wait_log(r"NOQUEUE: reject: MAIL from .*: 452 4\.3\.1 Insufficient system storage")
        self.nothing_left(d, before)
        self.unfill()
        self.resumes(d, before)
        self.alive(d)

    def test_enospc_of_the_write_itself(self):
        """The free-space figure says there is room (MTA_TEST_FREE_BYTES), the disk is full:
        the spool's writes fail with ENOSPC (commit of a small message, streaming of a large
        one) and that is 452 4.3.1 too, with the reason in the mail log."""
        d = self.daemon_on_volume(env={"MTA_TEST_FREE_BYTES": str(1 << 40)})
        before = d.queued_ids()
        self.fill()
        for body in (SMALL, LARGE):
            r = self.send(d, body, 452)
            self.assertReply(r, 452, "4.3.1 Insufficient system storage")
            self.alive(d)
            self.nothing_left(d, before)
        d.wait_log(r"No space left on device", count=2)
        self.unfill()
        self.resumes(d, before)
        r = self.send(d, LARGE, 250)
        self.assertIn(queue_id_of(r), d.queued_ids())
        self.alive(d)

    def test_read_only_volume(self):
        """The volume is remounted read-only under the daemon: 451 4.3.0 with a log line
        naming the cause, no crash; remounted read-write, intake resumes by itself."""
        d = self.daemon_on_volume()
        before = d.queued_ids()
        r = run("mount", "-o", "remount,ro", self.vol)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            # before the daemon's next look at the volume (once a second) the write fails
            bodies_sent = 0
            for body in (SMALL, LARGE):
                with d.client() as c:
                    c.ehlo()
                    r = c.cmd("MAIL FROM:<s@example.org>")
                    if r.code == 250:
                        self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
                        self.assertReply(c.cmd("DATA"), 354)
                        c.send(body + b".\r\n")
                        r = c.reply(t(20))
                        bodies_sent += 1
                    self.assertReply(r, 451, "4.3.0 ")
                self.alive(d)
            self.assertEqual(d.queued_ids(), before)
            if bodies_sent:
                d.wait_log(r"Read-only file system", count=bodies_sent)
            # once noticed: said in the log, and refused at MAIL (no body sent in vain)
            d.wait_log(r"data volume %s is read-only" % self.data)
            r = self.wait_mail_reply(d, 451)
            self.assertReply(r, 451, "4.3.0 ")
        finally:
            r = run("mount", "-o", "remount,rw", self.vol)
        self.assertEqual(r.returncode, 0, r.stderr)
        d.wait_log(r"data volume %s is writable again" % self.data)
        self.resumes(d, before)
        self.nothing_left(d, d.queued_ids())
        self.alive(d)

    def test_vanished_volume_renamed_away_and_back(self):
        """The data volume's directory is renamed away under the daemon: a log line says so,
        clients get 451 4.3.0 instead of their mail going where nobody looks; renamed back,
        intake resumes by itself."""
        # mtad runs as mail_owner: it can tell the volume is back only if it may look up its
        # path (a root-only path above it hides that; then only an unmount is told, below)
        os.chmod(self.tmp, 0o711)
        d = self.daemon_on_volume(mode=0o711)
        qid0 = queue_id_of(self.send(d, SMALL, 250))
        away = self.data + ".away"
        os.rename(self.data, away)
        try:
            d.wait_log(r"data volume %s is gone" % self.data, timeout=t(5))
            r = self.wait_mail_reply(d, 451)
            self.assertReply(r, 451, "4.3.0 ")
            self.alive(d)
            # nothing new was written where the volume went
            found = set()
            for root, _dirs, files in os.walk(os.path.join(away, "queue")):
                # slots made ahead hold no mail (docs/spool-format.md)
                found.update(f for f in files if "." not in f
                             and not mtatest.is_free_slot(os.path.join(root, f), f))
            self.assertEqual(found, {qid0})
        finally:
            os.rename(away, self.data)
        d.wait_log(r"data volume %s is back" % self.data, timeout=t(5))
        self.resumes(d, {qid0})
        self.assertIn(qid0, d.queued_ids())
        self.alive(d)

    def test_vanished_volume_lazily_unmounted(self):
        """The data volume (a mount point) is unmounted lazily under the daemon, whose
        descriptors still reach it although nobody else does: a log line, 451 4.3.0 at MAIL,
        no crash, a clean stop; a restart on what is now at the path takes mail again."""
        d = self.daemon_on_volume(subdir=False)
        self.send(d, SMALL, 250)
        r = run("umount", "-l", self.vol)
        self.assertEqual(r.returncode, 0, r.stderr)
        d.wait_log(r"data volume %s is gone" % self.data, timeout=t(5))
        r = self.wait_mail_reply(d, 451)
        self.assertReply(r, 451, "4.3.0 ")
        self.alive(d)
        self.assertEqual(d.stop(), 0, d.stderr()[-3000:])
        d.start()
        self.resumes(d, set())


if __name__ == "__main__":
    mtatest.main()
