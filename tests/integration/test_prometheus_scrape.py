"""
test_prometheus_scrape.py - a real Prometheus server (the Debian package's
/usr/bin/prometheus) scrapes the daemon's /metrics on the UI port with HTTP basic
authentication, as an administrator would set it up: the target turns "up" and a
PromQL query returns the number of messages received.
Not here: the exposition text itself (test_http_api.py runs promtool on it).
Prometheus is started with its own storage directory in the test's temp dir and
listens on a free loopback port only; nothing here reaches the network.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import t  # noqa: E402


def prometheus_binary():
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)


@unittest.skipUnless(prometheus_binary(), "prometheus not installed (apt-get install -y prometheus)")
class PrometheusScrape(mtatest.MtaTestCase):

    def start_prometheus(self, target_port, username, password):
        """start_prometheus - a private Prometheus scraping 127.0.0.1:TARGET_PORT every second."""
        pdir = os.path.join(self.tmp, "prometheus")
        os.makedirs(os.path.join(pdir, "data"))
        pwfile = os.path.join(pdir, "password")
        with open(pwfile, "w") as f:
            f.write(password)
        cfg = os.path.join(pdir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: mta\n"
                    "    metrics_path: /metrics\n"
                    "    basic_auth:\n"
                    "      username: %s\n"
                    "      password_file: %s\n"
                    "    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % (json.dumps(username), pwfile,
                                                              target_port))
        self.prom_port = mtatest.free_port()
        log = open(os.path.join(pdir, "prometheus.log"), "wb")
        self.addCleanup(log.close)
        self.prom_log = os.path.join(pdir, "prometheus.log")
        self.prom = subprocess.Popen(
            [prometheus_binary(), "--config.file=" + cfg,
             "--storage.tsdb.path=" + os.path.join(pdir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.prom_port],
            stdout=log, stderr=subprocess.STDOUT, cwd=pdir)
        self.addCleanup(self.stop_prometheus)

    def stop_prometheus(self):
        if self.prom.poll() is None:
            os.kill(self.prom.pid, signal.SIGTERM)
            try:
                self.prom.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.prom.pid, signal.SIGKILL)
                self.prom.wait()

    def prom_get(self, path, **params):
        url = "http://127.0.0.1:%d%s" % (self.prom_port, path)
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read().decode())

    def prom_tail(self):
        try:
            with open(self.prom_log, "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_target(self, deadline):
        """wait_target - until Prometheus reports the mta target's health "up"; returns it."""
        last = None
        while time.monotonic() < deadline:
            if self.prom.poll() is not None:
                self.fail("prometheus exited with %d:\n%s" % (self.prom.returncode, self.prom_tail()))
            try:
                js = self.prom_get("/api/v1/targets")
                targets = js["data"]["activeTargets"]
                last = targets
                if targets and targets[0].get("health") == "up":
                    return targets[0]
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        self.fail("the target never became up; last /api/v1/targets: %r\nprometheus log:\n%s"
                  % (last, self.prom_tail()))

    def query(self, expr):
        js = self.prom_get("/api/v1/query", query=expr)
        self.assertEqual(js["status"], "success", js)
        return js["data"]["result"]

    def send_one(self, d):
        s = d.smtp()
        try:
            s.ehlo("client.example")
            s.sendmail("s@example.org", ["a@example.com"],
                       b"Subject: scrape\r\nFrom: s@example.org\r\n\r\nhello\r\n")
        finally:
            s.quit()

    def test_prometheus_scrapes_metrics_with_basic_auth(self):
        d = self.daemon({"username": "admin", "password": "s3cret pass"})
        self.send_one(d)
        start = time.monotonic()
        self.start_prometheus(d.ui_port, "admin", "s3cret pass")
        target = self.wait_target(start + 25)
        self.assertEqual(target["scrapeUrl"], "http://127.0.0.1:%d/metrics" % d.ui_port)
        self.assertEqual(target.get("lastError", ""), "")
        # the sample of a scrape after the message: exactly one received
        value = None
        deadline = start + 35
        while time.monotonic() < deadline:
            res = self.query("mta_received_total")
            if res:
                value = res[0]["value"][1]
                break
            time.sleep(0.3)
        self.assertIsNotNone(value, "mta_received_total has no sample; log:\n" + self.prom_tail())
        self.assertEqual(res[0]["metric"].get("job"), "mta")
        self.assertEqual(res[0]["metric"].get("instance"), "127.0.0.1:%d" % d.ui_port)
        self.assertEqual(float(value), 1.0, res)
        # the scrape itself succeeded ("up" is Prometheus's own series for the target)
        up = self.query('up{job="mta"}')
        self.assertEqual([r["value"][1] for r in up], ["1"], up)

    def test_wrong_password_is_a_down_target(self):
        d = self.daemon({"username": "admin", "password": "right"})
        start = time.monotonic()
        self.start_prometheus(d.ui_port, "admin", "wrong")
        last = None
        while time.monotonic() < start + 20:
            if self.prom.poll() is not None:
                self.fail("prometheus exited:\n" + self.prom_tail())
            try:
                targets = self.prom_get("/api/v1/targets")["data"]["activeTargets"]
            except (OSError, ValueError, KeyError):
                targets = []
            if targets and targets[0].get("health") == "down":
                last = targets[0]
                break
            self.assertNotEqual(targets[0].get("health") if targets else None, "up", targets)
            time.sleep(0.3)
        self.assertIsNotNone(last, "the target never became down:\n" + self.prom_tail())
        self.assertIn("401", last.get("lastError", ""))


if __name__ == "__main__":
    mtatest.main()
