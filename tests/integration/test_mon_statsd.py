"""
test_mon_statsd.py - the mon terminal: with mon_terminal = 127.0.0.1:PORT the
daemon pushes StatsD gauges (mta.NAME:VALUE|g) over UDP at start and every 5 s;
a UDP socket in the test receives them and sees the queue counters move.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import t  # noqa: E402


class MonStatsd(mtatest.MtaTestCase):
    def setUp(self):
        super().setUp()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.addCleanup(self.sock.close)
        self.port = self.sock.getsockname()[1]

    def receive_until(self, pred, timeout):
        """receive_until - gauges {name: value} of the datagrams until PRED(gauges) or TIMEOUT."""
        gauges = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            self.assertLessEqual(len(data), 1400)
            for line in data.decode().split("\n"):
                name, _, rest = line.partition(":")
                value, _, kind = rest.partition("|")
                self.assertEqual(kind, "g", line)
                self.assertTrue(name.startswith("mta."), line)
                gauges[name] = float(value)
            if pred(gauges):
                return gauges
        return gauges

    def test_gauges_are_pushed(self):
        d = self.daemon(settings={"mon_terminal": "127.0.0.1:%d" % self.port,
                                  "smart_relay": "[127.0.0.1]:%d" % mtatest.free_port()})
        g = self.receive_until(lambda g: "mta.smtp_active_sessions" in g, t(8))
        for name in ("mta.mqueue_messages", "mta.mqueue_kilobytes", "mta.smtp_active_sessions",
                     "mta.cpu_percent", "mta.rss_bytes", "mta.received", "mta.delivered",
                     "mta.deferred", "mta.bounced", "mta.rejected"):
            self.assertIn(name, g)
        self.assertGreater(g["mta.rss_bytes"], 1 << 20)
        self.assertEqual(g["mta.mqueue_messages"], 0)
        # two messages queued: the next pushes (every 5 s) show them
        with d.smtp() as s:
            s.sendmail("a@example.org", ["b@example.com"], b"Subject: x\r\n\r\nx\r\n")
            s.sendmail("a@example.org", ["c@example.com"], b"Subject: y\r\n\r\ny\r\n")
        g = self.receive_until(lambda g: g.get("mta.mqueue_messages") == 2, t(15))
        self.assertEqual(g.get("mta.mqueue_messages"), 2)
        self.assertGreaterEqual(g["mta.mqueue_kilobytes"], 1)
        self.assertGreaterEqual(g["mta.received"], 2)


if __name__ == "__main__":
    mtatest.main()
