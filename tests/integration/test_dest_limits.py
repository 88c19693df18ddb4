"""
test_dest_limits.py - Postfix's per-destination limits on outbound delivery, seen from
sinks that count: smtp_destination_concurrency_limit (simultaneous connections),
smtp_destination_rate_delay (spacing), a destination answering 421 is throttled while
another destination gets its mail at once (MX through the suite's dnsmasq, sinks on
127.X.Y.H:25 of a /24 this process claims), connection reuse (1,000 messages over few
TCP connections; smtp_connection_reuse_count_limit), and
smtp_destination_recipient_limit (a 120-recipient message in 3 transactions).
Not here: MX fallback and DNS failures (test_delivery_mx.py).
"""

import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsserver  # noqa: E402
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

NET = mtatest.loopback_block(25, range(20, 22)) or "127.0.0."  # None: not root (skipped)
A_BAD, A_GOOD = NET + "20", NET + "21"
RECORDS = [
    "mx-host=bad.test,mx.bad.test,10",
    "host-record=mx.bad.test,%s" % A_BAD,
    "mx-host=good.test,mx.good.test,10",
    "host-record=mx.good.test,%s" % A_GOOD,
]


class _File:
    """A sink session's reader that reports the end of the session (QUIT or EOF) when it is
    read, before the sink answers: the client may open its next connection only after the
    reply, so the count of open sessions never runs behind the client's."""

    def __init__(self, f, end):
        self.f, self.end = f, end

    def readline(self, *a):
        line = self.f.readline(*a)
        if not line or line[:4].upper() == b"QUIT":
            self.end()
        return line

    def close(self):
        self.f.close()


class _Conn:
    def __init__(self, sock, end):
        self.sock, self.end = sock, end

    def makefile(self, *a, **kw):
        return _File(self.sock.makefile(*a, **kw), self.end)

    def __getattr__(self, name):
        return getattr(self.sock, name)


class CountingSink(smtpsink.Sink):
    """A sink that counts sessions open at once (max_active) and stamps each message's
    end of data (times); DOT_DELAY makes each delivery take that long."""

    def __init__(self, *a, dot_delay=0.0, greeting_delay=0.0, **kw):
        super().__init__(*a, **kw)
        self.dot_delay, self.greeting_delay = dot_delay, greeting_delay
        self.active = self.max_active = 0
        self.times = []

    def _reply(self, stage, default):
        if stage == "greeting" and self.greeting_delay:
            time.sleep(self.greeting_delay)  # a busy server: connections pile up
        if stage == "dot":
            if self.dot_delay:
                time.sleep(self.dot_delay)
            with self.lock:
                self.times.append(time.monotonic())
        return super()._reply(stage, default)

    def _session(self, conn):
        state = {"open": True}

        def end():
            with self.lock:
                if state["open"]:
                    state["open"] = False
                    self.active -= 1

        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            super()._session(_Conn(conn, end))
        finally:
            end()


def submit(d, n, rcpts, threads=4):
    """submit - N messages to RCPTS over THREADS parallel SMTP sessions."""
    errors = []

    def run(k):
        try:
            s = d.smtp()
            for i in range(k):
                s.sendmail("s@sender.test", rcpts, b"Subject: dest %d\r\n\r\nbody\r\n" % i)
            s.quit()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    ts = [threading.Thread(target=run, args=(k,)) for k in per if k]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    if errors:
        raise errors[0]


class DestLimitsTest(mtatest.MtaTestCase):

    def relay_sink(self, **kw):
        s = CountingSink("127.0.0.1", 0, **kw).start()
        self.addCleanup(s.stop)
        return s

    def relay_daemon(self, sink, extra=None):
        s = {"smart_relay": "[127.0.0.1]:%d" % sink.port}
        s.update(extra or {})
        return self.daemon(s)

    def test_concurrency_limit_holds(self):
        sink = self.relay_sink(dot_delay=0.02)
        d = self.relay_daemon(sink, {"smtp_destination_concurrency_limit": "3",
                                     "initial_destination_concurrency": "5"})
        submit(d, 200, ["r@example.net"])
        got = sink.wait_messages(200, t(60))
        self.assertEqual(len(got), 200)
        print("concurrency: at most %d sessions at once, %d connections for 200 messages"
              % (sink.max_active, sink.sessions), file=sys.stderr)
        self.assertLessEqual(sink.max_active, 3)
        self.assertGreaterEqual(sink.max_active, 2)  # deliveries did run in parallel

    def test_rate_delay_spaces_deliveries(self):
        sink = self.relay_sink()
        d = self.relay_daemon(sink, {"smtp_destination_rate_delay": "1s"})
        submit(d, 4, ["r@example.net"], threads=1)
        got = sink.wait_messages(4, t(20))
        self.assertEqual(len(got), 4)
        gaps = [b - a for a, b in zip(sink.times, sink.times[1:])]
        print("rate delay 1s: gaps %s" % ["%.2f" % g for g in gaps], file=sys.stderr)
        self.assertEqual(sink.max_active, 1)
        for g in gaps:
            self.assertGreaterEqual(g, 0.9)

    def test_recipient_limit_splits_transactions(self):
        sink = self.relay_sink()
        d = self.relay_daemon(sink)
        rcpts = ["r%d@example.net" % i for i in range(120)]
        submit(d, 1, rcpts, threads=1)
        got = sink.wait_messages(3, t(20))
        time.sleep(0.5)  # a wrong split would show more transactions
        self.assertEqual(sorted(len(m.rcpts) for m in sink.messages), [20, 50, 50])
        self.assertEqual(sorted(r for m in got for r in m.rcpts), sorted(rcpts))
        d.wait_log(r": removed$", t(10))

    def test_thousand_messages_few_connections(self):
        sink = self.relay_sink()
        d = self.relay_daemon(sink)
        submit(d, 1000, ["r@example.net"])
        got = sink.wait_messages(1000, t(120))
        self.assertEqual(len(got), 1000)
        print("1000 messages to one destination: %d TCP connections, at most %d at once"
              % (sink.sessions, sink.max_active), file=sys.stderr)
        self.assertLess(sink.sessions, 100)
        self.assertLessEqual(sink.max_active, 20)

    def test_reuse_count_limit(self):
        sink = self.relay_sink(dot_delay=0.01)
        d = self.relay_daemon(sink, {"smtp_connection_reuse_count_limit": "2",
                                     "smtp_destination_concurrency_limit": "1"})
        submit(d, 30, ["r@example.net"], threads=1)
        self.assertEqual(len(sink.wait_messages(30, t(30))), 30)
        # each connection carries its first message and two reuses at most
        self.assertGreaterEqual(sink.sessions, 10)


class DestThrottleTest(mtatest.MtaTestCase):

    def setUp(self):
        super().setUp()
        if not dnsserver.available():
            self.skipTest("dnsmasq is not installed")
        if NET == "127.0.0.":
            self.skipTest("cannot bind port 25 (needs root)")
        self.dns = dnsserver.DnsServer(self.tmp, RECORDS).start()
        self.addCleanup(self.dns.stop)

    def test_421_backs_off_that_destination_only(self):
        bad = CountingSink(A_BAD, 25, greeting_delay=0.5,
                           replies={"greeting": ["421 4.3.2 Service not available"]})
        good = CountingSink(A_GOOD, 25, dot_delay=0.01)
        for s in (bad, good):
            s.start()
            self.addCleanup(s.stop)
        d = self.daemon({"dns_servers": self.dns.server, "smart_relay": "",
                         "minimal_backoff_time": "1h", "maximal_backoff_time": "1h"})
        submit(d, 30, ["x@bad.test"], threads=1)
        start = time.monotonic()
        submit(d, 30, ["y@good.test"], threads=1)
        self.assertEqual(len(good.wait_messages(30, t(20))), 30)
        took = time.monotonic() - start
        d.wait_log(r"to=<x@bad\.test>, relay=none, .*dsn=4\.3\.2, status=deferred \(delivery "
                   r"temporarily suspended: host mx\.bad\.test\[[0-9.]+\] refused to talk to "
                   r"me: 421 4\.3\.2 Service not available\)$", t(10))
        d.wait_log(r"warning: bad\.test: destination throttled for 3600s", t(5))
        d.wait_log(r"to=<x@bad\.test>, .*status=deferred", t(10), count=30)
        # the administrator sees it in /api/stats: bad.test throttled, with the reason
        c = http.client.HTTPConnection("127.0.0.1", d.ui_port, timeout=t(10))
        c.request("GET", "/api/stats")
        st = json.loads(c.getresponse().read())
        c.close()
        dests = {x["name"]: x for x in st["destinations"]}
        self.assertTrue(dests["bad.test"]["dead"], st["destinations"])
        self.assertEqual(dests["bad.test"]["window"], 0)
        self.assertIn("421 4.3.2 Service not available", dests["bad.test"]["reason"])
        self.assertFalse(dests.get("good.test", {}).get("dead", False))
        print("421 destination: %d connections for 30 messages; good destination: 30 in "
              "%.1fs" % (bad.sessions, took), file=sys.stderr)
        # throttled after the first cohort: only a few of the 30 messages were tried
        if bad.sessions > 8:
            print("\n".join(d.log_lines(r"bad\.test|throttl")), file=sys.stderr)
        self.assertLessEqual(bad.sessions, 8)
        self.assertEqual(d.log_lines(r"to=<y@good\.test>.*status=deferred"), [])
        self.assertLess(took, t(15))


if __name__ == "__main__":
    mtatest.main()
