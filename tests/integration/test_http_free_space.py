"""
test_http_free_space.py - the dashboard messages about the data volume, worded
exactly as appliance-spec.md words them, on the dashboard and in /api/stats.
The spool's test hook MTA_TEST_FREE_BYTES=FREE/TOTAL makes the daemon believe the
data volume has FREE of TOTAL bytes free. Below 1% only the more severe 1%
message is shown.
"""

import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import t  # noqa: E402

MSG5 = "Data volume free space is below 5%."
MSG1 = "Data volume free space is below 1%."


class FreeSpace(mtatest.MtaTestCase):
    def get(self, d, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (d.ui_port, path),
                                    timeout=t(10)) as r:
            return r.read().decode()

    def stats_when(self, d, pred):
        deadline = time.monotonic() + t(10)
        while True:
            s = json.loads(self.get(d, "/api/stats"))
            if pred(s) or time.monotonic() > deadline:
                return s
            time.sleep(0.2)

    def check(self, free, total, want):
        d = self.daemon(env={"MTA_TEST_FREE_BYTES": "%d/%d" % (free, total)},
                        name="mtad-%d" % free)
        s = self.stats_when(d, lambda s: s["dashboard_messages"] == want)
        self.assertEqual(s["dashboard_messages"], want)
        self.assertAlmostEqual(s["data_volume_free_percent"], 100.0 * free / total, places=1)
        page = self.get(d, "/")
        for m in (MSG5, MSG1):
            if m in want:
                self.assertIn(m, page)
            else:
                self.assertNotIn(m, page)
        metrics = self.get(d, "/metrics")
        self.assertIn("mta_dashboard_messages %d\n" % len(want), metrics)
        d.stop()

    def test_plenty_of_space(self):
        self.check(50 << 30, 100 << 30, [])

    def test_below_5_percent(self):
        self.check(4 << 30, 100 << 30, [MSG5])

    def test_below_1_percent(self):
        self.check(500 << 20, 100 << 30, [MSG1])


if __name__ == "__main__":
    mtatest.main()
