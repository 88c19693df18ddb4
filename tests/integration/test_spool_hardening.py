"""
test_spool_hardening.py - what the daemon does with queue files and replies it
cannot trust, seen from outside: crafted queue files planted in the spool
(docs/spool-format.md) with CR LF inside an address, a sender far over the
RFC 5321 limits, a size near LLONG_MAX and a status file with an absurd
attempt count are quarantined in corrupt/ at start, the next hop (an smtpsink)
never sees an injected command, good mail beside them is delivered, and mtad
neither crashes nor trips its sanitizers. A remote server's reply with terminal
escapes is shown printable by `mtactl queue` and `mtactl queue --json`. A
deferred message keeps its next-retry time across a restart.
Not here: the envelope parser's unit tests (tests/unit/test_spool_envelope.c),
the crash-recovery load tests (test_crash_recovery.py).
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

BODY = (b"From: s@example.org\r\nTo: r@example.com\r\nSubject: planted\r\n"
        b"Message-ID: <planted@client.example>\r\n\r\nplanted body\r\n")


def envelope(qid, sender, rcpts, size=None, extra=b""):
    """envelope - a queue file's text (docs/spool-format.md) with raw, already-escaped
    values, so a test can write what mtad itself never would."""
    lines = [b"MTA-QUEUE 1", b"id " + qid.encode(), b"arrival 1700000000000000",
             b"size %d" % (len(BODY) if size is None else size), b"sender " + sender]
    lines += [b"rcpt - - " + r for r in rcpts]
    return b"\n".join(lines) + b"\n" + extra + b"end\n" + BODY


class SpoolHardening(mtatest.MtaTestCase):

    def sink(self, **kw):
        s = smtpsink.Sink("127.0.0.1", 0, **kw).start()
        self.addCleanup(s.stop)
        return s

    def mtactl(self, d, *args):
        return subprocess.run([mtatest.MTACTL, "-c", d.config_path] + list(args),
                              capture_output=True, timeout=t(20))

    def plant(self, d, qid, raw, suffix=""):
        path = os.path.join(d.data_volume, "queue", qid[-1], qid + suffix)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(raw)
        return path

    def corrupt(self, d):
        out = {}
        for root, _dirs, files in os.walk(os.path.join(d.data_volume, "corrupt")):
            for fn in files:
                with open(os.path.join(root, fn), "rb") as f:
                    out[fn] = f.read()
        return out

    def test_crafted_queue_files_are_quarantined(self):
        sink = self.sink()
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port,
                         "minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
                         "queue_run_delay": "1s"})
        self.assertEqual(d.stop(), 0)
        crafted = {
            # CR LF decoded inside an address: "RCPT TO:<v@example.com" CRLF "VRFY injected>"
            "00000000000010A1": envelope("00000000000010A1", b"s@example.org",
                                         [b"v@example.com%0D%0AVRFY%20injected"]),
            "00000000000010A2": envelope("00000000000010A2",
                                         b"s@example.org%0D%0ANOOP%20injected", [b"v@example.com"]),
            # a sender far over RFC 5321's 256 bytes: the relay's MAIL line overflowed its buffer
            "00000000000010A3": envelope("00000000000010A3", b"a" * 6000 + b"@example.org",
                                         [b"v@example.com"]),
            "00000000000010A4": envelope("00000000000010A4", b"s@example.org",
                                         [b"v" * 5000 + b"@example.com"]),
            # a size near LLONG_MAX: "envelope + size = file size" overflowed (UBSan abort)
            "00000000000010A5": envelope("00000000000010A5", b"s@example.org", [b"v@example.com"],
                                         size=9223372036854775800),
            # an escape sequence in an address (a terminal injection via mtactl queue)
            "00000000000010A6": envelope("00000000000010A6", b"s@example.org",
                                         [b"v%1B[2J@example.com"]),
        }
        for qid, raw in crafted.items():
            self.plant(d, qid, raw)
        good = "00000000000010B7"
        self.plant(d, good, envelope(good, b"good@example.org", [b"ok@example.com"]))
        # a good message whose status file claims an absurd number of attempts
        # (the scheduler's attempts++ overflowed): the status is quarantined, the
        # message is delivered
        good2 = "00000000000010B8"
        self.plant(d, good2, envelope(good2, b"good2@example.org", [b"ok2@example.com"]))
        self.plant(d, good2, b"MTA-STATUS 1\nattempts 99999999999999999999\n"
                             b"next 9223372036854775807\nslots P\nend\n", ".st")
        d.start()
        msgs = sink.wait_messages(2, timeout=t(15))
        self.assertEqual(sorted(m.mail_from for m in msgs), ["good2@example.org", "good@example.org"])
        time.sleep(t(1.5))  # a queue run later: nothing else reaches the sink
        self.assertTrue(d.running(), "mtad died; stderr:\n" + d.stderr()[-3000:])
        with sink.lock:
            commands = list(sink.commands)
        for c in commands:
            self.assertNotIn("injected", c, "a command was injected toward the next hop: %r" % c)
            self.assertFalse(c.startswith(("VRFY", "NOOP")), "injected command %r" % c)
            self.assertLess(len(c), 1000, "an over-long command reached the next hop")
        self.assertEqual(len(msgs), 2, "the sink got more than the two good messages")
        quarantined = self.corrupt(d)
        for qid, raw in crafted.items():
            self.assertIn(qid, quarantined, "%s not quarantined; corrupt/ has %s"
                          % (qid, sorted(quarantined)))
            self.assertEqual(quarantined[qid], raw, "%s changed in quarantine" % qid)
            self.assertNotIn(qid, d.spool_files())
            d.wait_log(r"warning: queue/%s/%s: .*moved to .*/corrupt/%s" % (qid[-1], qid, qid))
        self.assertIn(good2 + ".st", quarantined)
        d.wait_log(r"warning: queue/%s/%s\.st: unreadable status file; moved to" % (good2[-1], good2))
        for qid in (good, good2):
            d.wait_log(r"%s: removed" % qid, timeout=t(10))
        if mtatest.SANITIZE:
            self.assertNotRegex(d.stderr(), r"runtime error|AddressSanitizer")

    def test_queue_listing_shows_replies_printable(self):
        evil = "451 4.7.1 \x1b]0;owned\x07\x1b[2J\x1b[31mred\x08\x7f try later"
        sink = self.sink(replies={"rcpt": [evil]})
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port,
                         "minimal_backoff_time": "1h", "maximal_backoff_time": "1h"})
        with d.smtp() as s:
            s.sendmail("s@example.org", ["r@example.com"], BODY)
        d.wait_log(r"status=deferred")
        q = self.mtactl(d, "queue")
        self.assertEqual(q.returncode, 0, q.stderr)
        self.assertIn(b"try later", q.stdout)
        bad = [b for b in q.stdout if (b < 0x20 and b != 0x0A) or b >= 0x7F]
        self.assertEqual(bad, [], "mtactl queue printed control bytes: %r" % q.stdout)
        self.assertIn(b"?]0;owned??[2J?[31mred?? try later", q.stdout)
        js = self.mtactl(d, "queue", "--json")
        self.assertEqual(js.returncode, 0, js.stderr)
        self.assertNotIn(b"\x1b", js.stdout)
        objs = [json.loads(line) for line in js.stdout.decode().splitlines() if line.strip()]
        self.assertEqual(len(objs), 1)
        reason = objs[0]["recipients"][0]["delay_reason"]
        self.assertIn("try later", reason)
        self.assertEqual([ch for ch in reason if ord(ch) < 0x20 or ord(ch) >= 0x7F], [],
                         "delay_reason holds control characters: %r" % reason)
        # the mail log line too
        for line in d.log_lines(r"status=deferred"):
            self.assertNotIn("\x1b", line)

    def test_deferred_mail_keeps_backoff_across_restart(self):
        backoff = 10
        sink = self.sink(replies={"rcpt": ["451 4.7.1 not now", "250 2.1.5 Ok"]})
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port,
                         "minimal_backoff_time": "%ds" % backoff,
                         "maximal_backoff_time": "%ds" % backoff, "queue_run_delay": "1s"})
        with d.smtp() as s:
            s.sendmail("s@example.org", ["r@example.com"], BODY)
        d.wait_log(r"status=deferred", timeout=t(10))
        deferred_at = time.monotonic()
        with sink.lock:
            first = sum(1 for c in sink.commands if c.startswith("RCPT"))
        self.assertEqual(first, 1)
        # the retry time is on disk before the restart: as Postfix keeps it, in the queue
        # file's modification time (with the attempt count in its nanoseconds), and no
        # status file is made for a message none of whose recipients is done
        qid = list(d.queued_ids())[0]
        path = d.spool_files()[qid]
        deadline = time.monotonic() + t(5)
        while os.stat(path).st_mtime < time.time() + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        sb = os.stat(path)
        self.assertGreater(sb.st_mtime, time.time() + 2, "no retry time on the queue file")
        self.assertEqual(sb.st_mtime_ns % 1000000000, 1, "attempt count not kept")
        self.assertFalse(os.path.exists(path + ".st"))
        self.assertEqual(d.stop(), 0)
        d.start()
        # well before the backoff ends: no new attempt (before, a restart retried at once)
        while time.monotonic() < deferred_at + backoff - 3:
            with sink.lock:
                rcpts = sum(1 for c in sink.commands if c.startswith("RCPT"))
            self.assertEqual(rcpts, 1, "retried %.1fs after the deferral, before the %ds backoff"
                             % (time.monotonic() - deferred_at, backoff))
            time.sleep(0.1)
        # once it has passed, the retry comes (queue_run_delay 1s) and delivers
        msgs = sink.wait_messages(1, timeout=t(3) + 10)
        self.assertEqual(len(msgs), 1, "not retried after the backoff ended")
        self.assertGreaterEqual(time.monotonic() - deferred_at, backoff - 2)
        d.wait_log(r"%s: removed" % qid, timeout=t(10))


if __name__ == "__main__":
    mtatest.main()
