"""
test_queue_scale.py - a large deferred queue (20,000 messages made by bench/queue_fill
through the spool's own intake, every 7th on hold) with qmgr_message_active_limit
lowered to 100: the scheduler keeps at most that many messages in full (observed in
/api/stats and /metrics while it loads at start and after a flush); SMTP is answered
and takes mail while the queue is still being read (the reads slowed by the test hook
MTA_TEST_LOAD_DELAY_US); paging /api/queue with after= and postqueue -p/-j list every
message exactly once; held messages stay held through a flush and a restart and are
listed with '!', a released one becomes deferred; SMTP answers (220, 250) while the
spool's start-up scan of the queue files (slowed by MTA_TEST_SCAN_DELAY_US) still runs,
/api/stats says spool_scanning meanwhile, and afterwards every message is listed once.
Not here: the mailq layout of single messages (test_postqueue.py).
"""

import http.client
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import t  # noqa: E402

BUILD = os.path.dirname(os.path.abspath(mtatest.MTACTL))
QUEUE_FILL = os.environ.get("QUEUE_FILL") or os.path.join(BUILD, "queue_fill")
POSTQUEUE = os.environ.get("POSTQUEUE") or os.path.join(BUILD, "postqueue")
N = 20000
HOLD_EVERY = 7
LIMIT = 100
SETTINGS = {"qmgr_message_active_limit": str(LIMIT), "minimal_backoff_time": "3600s",
            "maximal_backoff_time": "3600s"}


def fetch(d, path):
    """fetch - GET PATH from D's HTTP service: (status, headers lower-cased, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", d.ui_port, timeout=t(30))
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, body


def stats(d):
    st, _, body = fetch(d, "/api/stats")
    assert st == 200, st
    return json.loads(body)


def unread(s):
    """unread - queued messages the scheduler has not read yet, from /api/stats S."""
    return N - s["mqueue_messages"] + s["qmgr_unloaded_messages"]


class QueueScale(mtatest.MtaTestCase):

    def setUp(self):
        super().setUp()
        for p in (QUEUE_FILL, POSTQUEUE):
            if not os.path.exists(p):
                self.skipTest("%s not built" % p)

    def filled(self, env=None, settings=None):
        """filled - a daemon (not started) whose data volume holds N generated messages."""
        s = dict(SETTINGS)
        s.update(settings or {})
        d = self.daemon(settings=s, env=env, start=False)
        p = subprocess.run([QUEUE_FILL, "-d", d.data_volume, "-n", str(N), "-H", str(HOLD_EVERY),
                            "-r", "3600"], capture_output=True, text=True, timeout=t(240))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return d

    def wait_loaded(self, d, bound):
        """wait_loaded - until the spool's start-up scan and the scheduler's start-up load
        end; the most messages in full seen."""
        most = 0
        deadline = time.monotonic() + t(120)
        while True:
            s = stats(d)
            self.assertLessEqual(s["qmgr_active_messages"], bound, s)
            if not s["spool_scanning"] and s["qmgr_unloaded_messages"] == 0:
                return most
            self.assertLess(time.monotonic(), deadline, s)
            time.sleep(0.05)

    def postqueue(self, d, *args):
        p = subprocess.run([POSTQUEUE, "-c", d.config_path] + list(args), capture_output=True,
                           timeout=t(120))
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.decode()

    def test_active_set_bounded_and_smtp_served_while_loading(self):
        d = self.filled(env={"MTA_TEST_LOAD_DELAY_US": "300"})
        d.start(timeout=t(60))
        # the 220 came while most of the queue is still unread (not yet scanned by the
        # spool, or scanned and not yet read by the scheduler)
        s = stats(d)
        self.assertGreater(unread(s), N // 4, s)
        with d.smtp() as c:
            c.sendmail("a@example.com", ["b@example.net"], b"Subject: during load\r\n\r\nx\r\n")
        self.assertGreater(unread(stats(d)), 0)
        # the start-up reads in flight may briefly add to the limit, nothing else does
        self.wait_loaded(d, LIMIT + 64)
        s = stats(d)
        self.assertEqual(s["mqueue_messages"], N + 1)
        self.assertLessEqual(s["qmgr_active_messages"], LIMIT, s)
        self.assertEqual(s["mqueue_held"], N // HOLD_EVERY)
        _, _, metrics = fetch(d, "/metrics")
        m = re.search(rb"^mta_qmgr_active_messages (\d+)$", metrics, re.M)
        self.assertIsNotNone(m, metrics[:2000])
        self.assertLessEqual(int(m.group(1)), LIMIT)
        # a flush makes all 17,143 deferred messages due: they go through the active set
        # in turn, never more than the limit at once, and are tried (deferred again here)
        before = s["deferred"]
        self.assertEqual(subprocess.run([mtatest.MTACTL, "-c", d.config_path, "flush"],
                                        timeout=t(30)).returncode, 0)
        deadline = time.monotonic() + t(60)
        while True:
            s = stats(d)
            self.assertLessEqual(s["qmgr_active_messages"], LIMIT, s)
            if s["deferred"] - before >= 2000:
                break
            self.assertLess(time.monotonic(), deadline, s)
            time.sleep(0.05)
        self.assertEqual(d.stop(), 0)

    def test_smtp_served_while_spool_scans(self):
        # each queued file's check slowed by the test hook: the scan takes > 4 s
        d = self.filled(env={"MTA_TEST_SCAN_DELAY_US": "200"})
        d.start(timeout=t(60))
        s = stats(d)
        self.assertTrue(s["spool_scanning"], s)
        self.assertLess(s["mqueue_messages"], N, s)  # partial while scanning
        with d.smtp() as c:  # the 220
            c.sendmail("a@example.com", ["b@example.net"], b"Subject: during scan\r\n\r\nx\r\n")
        self.assertTrue(stats(d)["spool_scanning"], "the 250 came after the scan")
        line = d.wait_log(r"queue\[\d+\]: recovered \d+ messages in [0-9.]+ s", timeout=t(120))[0]
        self.assertIn("recovered %d messages" % N, line)
        self.wait_loaded(d, LIMIT + 64)
        s = stats(d)
        self.assertFalse(s["spool_scanning"], s)
        self.assertEqual(s["mqueue_messages"], N + 1)
        on_disk = set(d.queued_ids())
        self.assertEqual(len(on_disk), N + 1)
        st, h, _ = fetch(d, "/api/queue?limit=1")
        self.assertEqual((st, int(h["x-total-count"])), (200, N + 1))
        ids = [json.loads(ln)["queue_id"] for ln in self.postqueue(d, "-j").splitlines()]
        self.assertEqual(len(ids), N + 1)  # every message exactly once
        self.assertEqual(set(ids), on_disk)
        self.assertEqual(d.stop(), 0)
        # a stop during the scan is clean and loses nothing; the next start finds it all
        d.start(timeout=t(60))
        self.assertTrue(stats(d)["spool_scanning"])
        self.assertEqual(d.stop(), 0)
        self.assertEqual(set(d.queued_ids()), on_disk)
        self.assertEqual(os.listdir(os.path.join(d.data_volume, "corrupt")), [])

    def test_paging_lists_every_message_once_and_holds_stay(self):
        d = self.filled()
        d.start(timeout=t(60))
        self.wait_loaded(d, LIMIT + 64)
        on_disk = set(d.queued_ids())
        self.assertEqual(len(on_disk), N)
        # /api/queue, a page at a time with after=
        seen, after, pages = [], None, 0
        while True:
            path = "/api/queue?limit=997" + ("&after=" + after if after else "")
            st, h, body = fetch(d, path)
            self.assertEqual(st, 200)
            self.assertEqual(int(h["x-total-count"]), N)
            ids = [json.loads(ln)["queue_id"] for ln in body.decode().splitlines()]
            self.assertLessEqual(len(ids), 997)
            seen += ids
            pages += 1
            if "x-next-after" not in h or pages > N // 997 + 2:
                break
            after = h["x-next-after"]
            self.assertEqual(after, ids[-1])
        self.assertEqual(len(seen), N)
        self.assertEqual(set(seen), on_disk)
        self.assertEqual(pages, (N + 996) // 997)
        # postqueue -p: the mailq layout, every ID once, held ones marked, Postfix's trailer
        out = self.postqueue(d, "-p")
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("----Queue ID-----"), lines[:2])
        ids = re.findall(r"^([0-9A-F]{16})([*!]?) ", out, re.M)
        self.assertEqual(len(ids), N)
        self.assertEqual({i for i, _ in ids}, on_disk)
        self.assertEqual(sum(1 for _, mark in ids if mark == "!"), N // HOLD_EVERY)
        self.assertEqual(lines[-1], "-- %d Kbytes in %d Requests." % (N * 4096 // 1024, N))
        self.assertEqual(lines[-2], "")
        # postqueue -j: one object a message, every ID once
        objs = [json.loads(ln) for ln in self.postqueue(d, "-j").splitlines()]
        self.assertEqual(sorted(o["queue_id"] for o in objs), sorted(on_disk))
        held = sorted(o["queue_id"] for o in objs if o["queue_name"] == "hold")
        self.assertEqual(len(held), N // HOLD_EVERY)
        self.assertEqual(sum(1 for o in objs if o["queue_name"] == "deferred"), N - len(held))
        # a flush leaves held messages alone; a release makes one deferred
        self.assertEqual(subprocess.run([mtatest.MTACTL, "-c", d.config_path, "flush"],
                                        timeout=t(30)).returncode, 0)
        self.assertEqual(subprocess.run([mtatest.MTACTL, "-c", d.config_path, "release",
                                         held[0]], capture_output=True,
                                        timeout=t(30)).returncode, 0)
        time.sleep(1)
        objs = {json.loads(ln)["queue_id"]: json.loads(ln)
                for ln in self.postqueue(d, "-j").splitlines()}
        self.assertEqual(objs[held[0]]["queue_name"], "deferred")
        self.assertEqual(sum(1 for o in objs.values() if o["queue_name"] == "hold"),
                         len(held) - 1)
        self.assertEqual(d.stop(), 0)
        # and the holds survive a restart
        d.start(timeout=t(60))
        self.wait_loaded(d, LIMIT + 64)
        self.assertEqual(stats(d)["mqueue_held"], len(held) - 1)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    mtatest.main()
