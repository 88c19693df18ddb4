"""
test_delivery_large.py - a 50 MB message relayed to a sink arrives intact (its
SHA-256 compared at the sink), in plaintext and over STARTTLS, and mtad's
resident memory grows far less than the message while it relays: the body is
streamed from the spool file a chunk at a time (src/relay/relay_body.c), never
held whole. The bound is loose (25 MB over the RSS before the message came) so
that it is not flaky; the old whole-message relay grew by more than 50 MB here.
Not here: the memory figure for 20 such messages at once (bench/relay_memory.py).
"""

import hashlib
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

SIZE = 50 * 1000 * 1000
GROWTH_MAX_KB = 25 * 1024


def big_message(size):
    """big_message - a message of about SIZE bytes: lines of 1..200 bytes, some starting with
    a dot (stuffed by the relay, so stuffing crosses chunk borders), all under 998 bytes so
    nothing is broken and the sink must see exactly these bytes."""
    rng = random.Random(14)
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-"
    pool = []
    for i in range(997):
        n = rng.randint(0, 200)
        line = bytes(rng.choice(alphabet) for _ in range(n))
        if i % 7 == 0:
            line = b"." + line
        pool.append(line + b"\r\n")
    head = (b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: large\r\n"
            b"Message-Id: <large.14@src.test>\r\nDate: Thu, 3 Dec 2026 08:00:00 +0000\r\n\r\n")
    parts, n, i = [head], len(head), 0
    while n < size:
        line = pool[i % len(pool)]
        parts.append(line)
        n += len(line)
        i += 1
    return b"".join(parts)


class RssSampler:
    """The daemon's largest VmRSS seen, sampled every 20 ms in a thread."""

    def __init__(self, d):
        self.d, self.peak, self.stopping = d, 0, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                self.peak = max(self.peak, self.d.rss_kb())
            except OSError:
                return
            time.sleep(0.02)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        return self.peak


class DeliveryLargeTest(mtatest.MtaTestCase):

    def relay_large(self, tls):
        sink = smtpsink.Sink(addr="127.0.0.1", port=0, tls_dir=self.tmp if tls else None)
        sink.start()
        self.addCleanup(sink.stop)
        env = {}
        if mtatest.SANITIZE:
            # ASan's quarantine keeps freed memory resident (256 MB by default): it would
            # measure how much was allocated over time instead of what is held at once
            env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                                   ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
                                   ).lstrip(":")
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port,
                         "message_size_limit": str(SIZE * 2),
                         "smtp_tls_security_level": "may" if tls else "none",
                         "minimal_backoff_time": "1h", "maximal_backoff_time": "2h",
                         "queue_run_delay": "1h"}, env=env)
        body = big_message(SIZE)
        want = hashlib.sha256(body).hexdigest()
        # a small message first, so that TLS and the relay's buffers are set up in the idle figure
        s = d.smtp()
        s.ehlo("client.example")
        s.sendmail("a@src.test", ["b@dst.test"], b"Subject: warm\r\n\r\nwarm up\r\n")
        self.assertEqual(len(sink.wait_messages(1, t(15))), 1)
        time.sleep(0.5)
        idle = d.rss_kb()
        sampler = RssSampler(d)
        try:
            s.sendmail("a@src.test", ["b@dst.test"], body)
        finally:
            s.quit()
        msgs = sink.wait_messages(2, t(120))
        peak = sampler.stop()
        self.assertEqual(len(msgs), 2, "the large message did not arrive")
        got = msgs[1].data
        self.assertEqual(msgs[1].tls, tls)
        start = got.index(b"\r\nFrom: a@src.test\r\n") + 2
        self.assertTrue(got.startswith(b"Received: "), got[:200])
        self.assertEqual(len(got) - start, len(body))
        self.assertEqual(hashlib.sha256(got[start:]).hexdigest(), want)
        d.wait_log(r"to=<b@dst\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent "
                   r"\(250 2\.0\.0 Ok: queued as SINK2\)$" % sink.port, t(10))
        self.assertEqual(d.log_lines(r"status=bounced|status=deferred"), [])
        sys.stderr.write("\n[%s] rss idle %d kB, peak %d kB, growth %d kB\n"
                         % (self.id(), idle, peak, peak - idle))
        self.assertLess(peak - idle, GROWTH_MAX_KB,
                        "mtad grew by %d kB while relaying a %d-byte message" % (peak - idle, SIZE))

    def test_large_message_plain(self):
        self.relay_large(tls=False)

    def test_large_message_starttls(self):
        self.relay_large(tls=True)


if __name__ == "__main__":
    mtatest.main()
