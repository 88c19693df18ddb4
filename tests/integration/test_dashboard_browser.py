"""
test_dashboard_browser.py - the dashboard in a real browser: Debian's headless
Chromium (fresh profile, no network besides loopback) loads the dashboard and the
queue page while mail is queued; the rendered DOM must show the numbers (after
app.js ran its refresh), and the screenshots are kept as test artifacts in
tests/artifacts/. Skipped, saying why, when Chromium is missing and cannot be
installed with apt-get.
"""

import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import t  # noqa: E402

ARTIFACTS = os.path.join(mtatest.SRCDIR, "tests", "artifacts")


def find_chromium():
    """find_chromium - the browser's path; tries `apt-get install -y chromium` once when missing."""
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p, None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "chromium is not installed and apt-get is not usable here"
    try:
        p = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True,
                           timeout=900)
    except subprocess.TimeoutExpired:
        return None, "apt-get install chromium timed out"
    path = shutil.which("chromium")
    if not path:
        return None, "apt-get install chromium failed: " + p.stderr.decode()[-300:]
    return path, None


class DashboardBrowser(mtatest.MtaTestCase):
    def setUp(self):
        super().setUp()
        self.chromium, why = find_chromium()
        if not self.chromium:
            self.skipTest(why)

    def browse(self, url, what, extra):
        """browse - run headless Chromium on URL with EXTRA (--dump-dom or --screenshot=...)."""
        profile = os.path.join(self.tmp, "chromium-profile-" + what)
        args = [self.chromium, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--user-data-dir=" + profile, "--window-size=1200,900",
                "--virtual-time-budget=3000"] + extra + [url]
        p = subprocess.run(args, capture_output=True, timeout=t(120))
        self.assertEqual(p.returncode, 0, p.stderr.decode()[-2000:])
        return p.stdout.decode("utf-8", "replace")

    def test_dashboard_shows_the_queue(self):
        d = self.daemon(settings={"smart_relay": "[127.0.0.1]:%d" % mtatest.free_port()})
        with d.smtp() as s:
            for i in range(3):
                s.sendmail("sender@example.org", ["rcpt%d@example.com" % i],
                           b"Subject: browser test\r\n\r\n" + b"x" * 3000 + b"\r\n")
        ids = sorted(self.wait_queued(d, 3))
        self.assertEqual(len(ids), 3)
        base = "http://127.0.0.1:%d" % d.ui_port

        dom = self.browse(base + "/", "dom", ["--dump-dom"])
        self.assertRegex(dom, r'data-k="mqueue_messages"[^>]*>3<')
        self.assertRegex(dom, r'data-k="received"[^>]*>[3-9]<')
        kb = re.search(r'data-k="mqueue_kilobytes"[^>]*>(\d+)<', dom)
        self.assertIsNotNone(kb)
        self.assertGreaterEqual(int(kb.group(1)), 9)  # 3 messages of > 3000 bytes
        self.assertIn("Mqueue messages", dom)
        self.assertIn("SMTP active sessions", dom)
        # app.js ran and refreshed the page from /api/stats (the live dot turns on)
        self.assertIn('class="live on"', dom)

        queue_dom = self.browse(base + "/queue", "qdom", ["--dump-dom"])
        for qid in ids:
            self.assertIn(qid, queue_dom)

        os.makedirs(ARTIFACTS, exist_ok=True)
        for page, name in (("/", "dashboard.png"), ("/queue", "queue.png"),
                           ("/queue/" + ids[0], "message.png")):
            shot = os.path.join(self.tmp, name)
            self.browse(base + page, name, ["--screenshot=" + shot])
            self.assertTrue(os.path.getsize(shot) > 10000, name)
            shutil.copy(shot, os.path.join(ARTIFACTS, name))


if __name__ == "__main__":
    mtatest.main()
