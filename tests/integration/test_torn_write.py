"""
test_torn_write.py - writes that a crash cut short never reach a recipient.
mtad accepts messages (deliveries deferred: they stay queued) and is stopped; in a
copy of its spool, free slots (files made ahead under fresh queue IDs, where the next
commits would have gone) are overwritten the way a power loss leaves an
unacknowledged commit: the file cut inside the message (no commit record), a record
cut in half, a page of the message missing between a complete envelope and record
(only the body checksum tells), a record left over from the slot's former message
(names another ID), and an envelope cut short. One slot gets a complete, valid
write: committed files that were never acknowledged may be delivered (a crash
after the flush, before the 250), and it shows the crafted format is the real one.
mtad restarts on the copy with the relay pointed at a sink: every acknowledged
message arrives exactly once and whole, none of the torn ones arrives, each is
logged and kept in corrupt/. Format: docs/spool-format.md.
"""

import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import queue_id_of, t  # noqa: E402

ACKED = 12
RECORD_LEN = 81


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_T = _crc_table()


def crc32c(data, crc=0):
    """crc32c - CRC-32C (Castagnoli), as in src/queue/spool_record.c."""
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = (c >> 8) ^ _T[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF


def record(qid, envlen, size, envcrc, bodycrc):
    """record - the commit record line (docs/spool-format.md)."""
    head = b"MTA-COMMIT %s %08X %016X %08X %08X " % (qid.encode(), envlen, size, envcrc, bodycrc)
    return head + b"%08X\n" % crc32c(head)


def body(tag):
    return (b"From: torn@example.org\r\nTo: sink@example.com\r\nSubject: %s\r\n"
            b"Message-ID: <%s@client.example>\r\n\r\n" % (tag, tag)
            + b"line of %s\r\n" % tag * 600)  # ~ 10 KiB: several pages


def committed_file(template_env, qid, msg, record_qid=None):
    """committed_file - a complete version 2 queue file of QID holding MSG, its envelope made
    from TEMPLATE_ENV (a real one); RECORD_QID puts another ID in the record."""
    env = re.sub(rb"\nid [0-9A-F]{16}\n", b"\nid " + qid.encode() + b"\n", template_env)
    env = re.sub(rb"\nsize [0-9]+\n", b"\nsize %d\n" % len(msg), env)
    rec = record(record_qid or qid, len(env), len(msg), crc32c(env), crc32c(msg))
    return env, env + msg + rec


class TornWrite(mtatest.MtaTestCase):

    def test_torn_writes_are_never_delivered(self):
        # deliveries go to a port that never answers: all stay queued, retried soon
        d = self.daemon({"minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
                         "queue_run_delay": "1s"})
        acked = {}
        with d.smtp() as s:
            s.ehlo()
            for i in range(ACKED):
                tag = b"acked-%d" % i
                self.assertEqual(s.mail("torn@example.org")[0], 250)
                self.assertEqual(s.rcpt("sink@example.com")[0], 250)
                code, text = s.data(body(tag))
                self.assertEqual(code, 250, text)
                acked[tag] = queue_id_of(text.decode())
        self.assertEqual(set(acked.values()) - d.queued_ids(), set())
        self.assertEqual(d.stop(), 0, d.stderr()[-3000:])

        # a copy of the spool, and in it the slots the next commits would have used
        copy = d.data_volume + "-copy"
        shutil.copytree(d.data_volume, copy, symlinks=True)
        slots = []
        for root, _dirs, files in os.walk(os.path.join(copy, "queue")):
            slots += [(f, os.path.join(root, f)) for f in sorted(files)
                      if "." not in f and mtatest.is_free_slot(os.path.join(root, f), f)]
        self.assertGreaterEqual(len(slots), 6, "no free slots in the spool to tear")
        template, _ = mtatest.split_spool_file(d.spool_raw(acked[b"acked-0"]))

        torn = {}

        def write_over(i, tag, data):
            name, path = slots[i]
            with open(path, "r+b") as f:  # in place, as mtad writes: the slot's tail stays
                f.write(data)
            torn[tag] = name

        msg = body(b"torn-cut")
        env, whole = committed_file(template, slots[0][0], msg)
        write_over(0, b"torn-cut", whole[:len(env) + len(msg) // 2])
        msg = body(b"torn-halfrecord")
        env, whole = committed_file(template, slots[1][0], msg)
        write_over(1, b"torn-halfrecord", whole[:-RECORD_LEN // 2])
        msg = body(b"torn-hole")
        env, whole = committed_file(template, slots[2][0], msg)
        hole = len(env) + 4096  # a page in the middle of the message never reached the disk
        write_over(2, b"torn-hole", whole[:hole] + b"\0" * 4096 + whole[hole + 4096:])
        msg = body(b"torn-oldrecord")
        env, whole = committed_file(template, slots[3][0], msg, record_qid=acked[b"acked-1"])
        write_over(3, b"torn-oldrecord", whole)
        msg = body(b"torn-envelope")
        env, whole = committed_file(template, slots[4][0], msg)
        write_over(4, b"torn-envelope", whole[:len(env) // 2])
        complete_id = slots[5][0]
        write_over(5, b"complete", committed_file(template, complete_id, body(b"complete"))[1])
        del torn[b"complete"]

        sink = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(sink.stop)
        d.data_volume = copy
        d.user_settings["smart_relay"] = "[127.0.0.1]:%d" % sink.port
        d.start(timeout=t(20))
        deadline = time.monotonic() + t(30)
        while d.queued_ids() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(d.queued_ids(), set(), d.maillog()[-3000:])
        got = {}
        for m in sink.wait_messages(0, 0):
            tag = re.search(rb"Message-ID: <([a-z0-9-]+)@client\.example>", m.data).group(1)
            self.assertEqual(mtatest.message_body(m.data), body(tag).split(b"\r\n\r\n", 1)[1],
                             "delivered copy of %s is not whole" % tag.decode())
            got[tag] = got.get(tag, 0) + 1
        for tag in acked:
            self.assertEqual(got.get(tag), 1, "acknowledged %s delivered %s times"
                             % (tag.decode(), got.get(tag)))
        for tag in torn:
            self.assertNotIn(tag, got, "torn write %s was delivered" % tag.decode())
        self.assertEqual(got.get(b"complete"), 1, "a complete write was not delivered")
        self.assertEqual(set(got) - set(acked) - {b"complete"}, set())
        # each torn one is said in the log and kept in corrupt/
        corrupt = os.listdir(os.path.join(copy, "corrupt"))
        log = d.maillog()
        for tag, name in torn.items():
            self.assertIn(name, corrupt, "torn write %s not quarantined" % tag.decode())
            self.assertRegex(log, r"warning: queue/[0-9A-F]/%s: .*(not completed|checksum)"
                             % name)


if __name__ == "__main__":
    mtatest.main()
