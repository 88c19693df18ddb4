"""
test_kill9_loop.py - fault injection: while several smtplib clients send and the
relay delivers to a sink (smart_relay), mtad is killed with SIGKILL at random
moments (a seeded RNG; the seed is printed, MTA_KILL9_SEED=N repeats a run) and
restarted on the same data volume, KILLS times. Then the queue drains, and every
message that got a 250 must have reached the sink at least once or still be
queued: none lost. A kill between the sink's 250 and the removal of the queue file
legitimately delivers a message twice; such duplicates are counted and printed,
with the kills survived, the messages acknowledged, delivered and lost (0).
Every delivered copy must be whole (nothing half-written is ever delivered).
Not here: single crashes with planted leftovers (test_crash_recovery.py).
"""

import os
import random
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import queue_id_of, t  # noqa: E402

KILLS = 20
THREADS = 4
MARK_RE = re.compile(rb"Message-ID: <k9-(\d+)-(\d+)@client\.example>")


def message(tid, n):
    head = ("From: k9-%d@example.org\r\nTo: sink@example.com\r\nSubject: kill9 %d/%d\r\n"
            "Message-ID: <k9-%d-%d@client.example>\r\n\r\n" % (tid, tid, n, tid, n)).encode()
    # sizes vary: most are held in memory, some streamed through tmp/ID.body (> 64 KiB);
    # lines stay under 998 bytes, which the relay would break (smtp_line_length_limit)
    line = (b"marker %d/%d " % (tid, n)) * 40 + b"\r\n"
    lines = 1 if n % 7 else 200
    return head + line * lines + b"end %d/%d\r\n" % (tid, n)


class Senders(mtatest.SenderThreads):
    """THREADS smtplib clients sending until stopped; they reconnect after every kill."""

    def __init__(self, d):
        super().__init__(d, THREADS)  # acked: (tid, n) -> queue ID: the 250 arrived
        self.unsure = set()  # (tid, n): the end of data was sent, no reply (killed)

    def run(self, tid):
        n = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.d.smtp_port, local_hostname="client.example",
                                  timeout=t(10)) as s:
                    s.ehlo()
                    for _ in range(10):
                        if self.stop.is_set():
                            break
                        if s.mail("k9-%d@example.org" % tid)[0] != 250:
                            break
                        if s.rcpt("sink@example.com")[0] != 250:
                            break
                        n += 1
                        key = (tid, n)
                        with self.lock:
                            self.unsure.add(key)
                        code, text = s.data(message(tid, n))
                        if code != 250:
                            break
                        with self.lock:
                            self.unsure.discard(key)
                            self.acked[key] = queue_id_of(text.decode())
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)  # killed: try again once it is back


class Kill9Loop(mtatest.MtaTestCase):

    def test_kill9_loop_loses_nothing(self):
        seed = int(os.environ.get("MTA_KILL9_SEED") or random.SystemRandom().randrange(1 << 31))
        rng = random.Random(seed)
        sys.stderr.write("\n[kill9 loop: seed %d (MTA_KILL9_SEED=%d repeats it)]\n" % (seed, seed))
        sink = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(sink.stop)
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port,
                         "minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
                         "queue_run_delay": "1s"})
        senders = Senders(d)
        senders.start()
        self.addCleanup(senders.finish)
        kills = 0
        for i in range(KILLS):
            # a random moment: mostly mid-traffic, sometimes right after a start
            time.sleep(t(rng.uniform(0.05, 1.2)))
            d.kill()
            kills += 1
            d.start(timeout=t(20))
        # let the load run on the last start a moment, then stop it and drain the queue
        time.sleep(t(0.5))
        senders.finish()
        acked = dict(senders.acked)
        unsure = set(senders.unsure)
        self.assertGreater(len(acked), 50, "load too small to be meaningful")
        deadline = time.monotonic() + t(60)
        while time.monotonic() < deadline:
            if not d.queued_ids():
                break
            time.sleep(0.2)
        queued = d.queued_ids()

        # what reached the sink, per message; every copy must be whole
        copies = {}
        for m in sink.wait_messages(0, 0):
            mm = MARK_RE.search(m.data)
            self.assertIsNotNone(mm, "a delivered message without a test Message-ID: %r"
                                 % m.data[:300])
            key = (int(mm.group(1)), int(mm.group(2)))
            # whole: the body exactly as sent (the daemon adds Received: and Date: above it)
            body = message(*key).split(b"\r\n\r\n", 1)[1]
            self.assertEqual(mtatest.message_body(m.data), body,
                             "delivered copy of %r is not whole" % (key,))
            copies[key] = copies.get(key, 0) + 1
        lost = sorted(k for k, qid in acked.items() if k not in copies and qid not in queued)
        dups = sum(c - 1 for c in copies.values())
        unacked_delivered = sum(1 for k in copies if k not in acked)
        phantom = sorted(k for k in copies if k not in acked and k not in unsure)
        sys.stderr.write(
            "[kill9 loop: seed %d, kills survived %d, acknowledged %d, delivered %d "
            "(%d copies), duplicates %d, still queued %d, delivered without a 250 seen "
            "(killed before the reply) %d, lost %d]\n"
            % (seed, kills, len(acked), len(copies), sum(copies.values()), dups, len(queued),
               unacked_delivered, len(lost)))
        self.assertEqual(lost, [], "acknowledged messages lost (seed %d)" % seed)
        self.assertEqual(phantom, [], "delivered messages nobody sent (seed %d)" % seed)
        self.assertEqual(queued, set(), "the queue did not drain (seed %d); log:\n%s"
                         % (seed, d.maillog()[-3000:]))
        self.assertTrue(d.running(), d.stderr()[-3000:])


if __name__ == "__main__":
    mtatest.main()
