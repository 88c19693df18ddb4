"""
test_smtp_limits.py - every resource limit as a client meets it: SIZE= and the
DATA stream against message_size_limit, overlong command lines, too many
recipients, smtpd_timeout, connections per client, total sessions, queue_minfree
(through the MTA_TEST_FREE_BYTES hook: at MAIL and while a body streams in),
and garbage without newlines.
Not here: relay policy (test_smtp_relay_policy.py).
"""

import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import ConnectionClosed, RawClient, queue_id_of, t  # noqa: E402

LIMIT = 100000
HDRS = (b"From: s@example.org\r\nTo: r@example.com\r\nSubject: limits\r\n"
        b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <lim@client.example>\r\n\r\n")


def body_of(nbytes):
    line = b"x" * 78 + b"\r\n"
    return HDRS + line * (nbytes // len(line) + 1)


class SmtpLimits(mtatest.MtaTestCase):
    def open_tx(self, c, rcpt="r@example.com"):
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % rcpt), 250)

    def test_size_parameter_over_limit(self):
        d = self.daemon(settings={"message_size_limit": str(LIMIT)})
        with d.client() as c:
            r = c.ehlo()
            self.assertIn("SIZE %d" % LIMIT, r.lines)
            self.assertReply(c.cmd("MAIL FROM:<s@example.org> SIZE=%d" % (LIMIT + 1)), 552,
                             "5.3.4 Message size exceeds fixed limit")
            self.assertReply(c.cmd("MAIL FROM:<s@example.org> SIZE=%d" % (LIMIT // 2)), 250, "2.1.0 Ok")

    def test_data_stream_over_limit(self):
        d = self.daemon(settings={"message_size_limit": str(LIMIT)})
        with d.client() as c:
            self.open_tx(c)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(body_of(LIMIT * 3) + b".\r\n")
            # Postfix: SIZE= gets "Message size exceeds fixed limit", the stream
            # "Error: message file too big" (cleanup's wording); both 552 5.3.4
            self.assertReply(c.reply(t(20)), 552, "5.3.4 ")
            # the partial body is gone by the time the refusal is read (no waiting: the
            # reply is sent only once the spool has removed it)
            self.assertEqual(d.tmp_files(), [], "tmp/ still holds the refused message")
            # the session survives and the next message (under the limit) is taken
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(body_of(LIMIT // 2) + b".\r\n")
            r = c.reply(t(20))
            self.assertReply(r, 250, "2.0.0 Ok: queued as ")
        self.assertEqual(d.queued_ids(), {queue_id_of(r)})
        self.assertEqual(d.tmp_files(), [])

    def test_refused_message_leaves_nothing_behind(self):
        # issue 12 defect 10: the 552 went out while a worker still removed the partial
        # tmp/ID.body, so a check right after the reply found it (once, on a slow disk).
        # Each refusal here streams well past the 64 KiB spool threshold, and the check
        # comes at once after each reply: it must never see a leftover.
        # (5 refusals a session: each counts against smtpd_hard_error_limit)
        d = self.daemon(settings={"message_size_limit": str(LIMIT)})
        for n in range(4):
            with d.client() as c:
                for i in range(5):
                    self.open_tx(c)
                    self.assertReply(c.cmd("DATA"), 354)
                    c.send(body_of(LIMIT * 3) + b".\r\n")
                    self.assertReply(c.reply(t(20)), 552, "5.3.4 ")
                    self.assertEqual(d.tmp_files(), [], "refusal %d/%d: tmp/ still holds the "
                                     "refused message when its 552 is read" % (n, i))
        with d.client() as c:
            chunk = body_of(LIMIT * 2)
            self.open_tx(c)
            c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
            self.assertReply(c.reply(t(20)), 552, "5.3.4 ")
            self.assertEqual(d.tmp_files(), [], "BDAT: tmp/ still holds the refused message")
        self.assertEqual(d.queued_ids(), set())

    def test_bdat_over_limit(self):
        d = self.daemon(settings={"message_size_limit": str(LIMIT)})
        with d.client() as c:
            self.open_tx(c)
            chunk = body_of(LIMIT * 2)
            c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
            r = c.reply(t(20))
            self.assertReply(r, 552, "5.3.4 ")
            self.assertReply(c.cmd("NOOP"), 250)
        self.assertEqual(d.queued_ids(), set())

    def test_command_line_too_long(self):
        d = self.daemon(settings={"line_length_limit": "1024"})
        with d.client() as c:
            c.ehlo()
            c.send(b"NOOP " + b"A" * 5000 + b"\r\n")
            self.assertReply(c.reply(), 500, "5.5.2 Error: line too long")
            # the rest of the long line is not taken for commands
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0 Ok")
            self.assertFalse(c.wait_closed(t(0.5)), "closed after the long line")
            self.assertEqual(c.buf, b"", "extra replies after the long line: %r" % c.buf)
            # a line just under the limit is fine
            self.assertReply(c.cmd("NOOP " + "B" * 900), 250)

    def test_too_many_recipients(self):
        d = self.daemon(settings={"smtpd_recipient_limit": "3"})
        with d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
            for i in range(3):
                self.assertReply(c.cmd("RCPT TO:<r%d@example.com>" % i), 250, "2.1.5 Ok")
            self.assertReply(c.cmd("RCPT TO:<r9@example.com>"), 452, "4.5.3 Error: too many recipients")
            self.assertReply(c.cmd("DATA"), 354)
            c.send(HDRS + b"hi\r\n.\r\n")
            r = c.reply()
            self.assertReply(r, 250, "2.0.0 Ok: queued as ")
        env, _ = d.spool_message(queue_id_of(r))
        self.assertNotIn(b"r9@example.com", env)
        d.wait_log(r": %s: from=<s@example\.org>, size=\d+, nrcpt=3 \(queue active\)" % queue_id_of(r))

    def test_hard_error_limit(self):
        d = self.daemon(settings={"smtpd_hard_error_limit": "3"})
        replies = []
        with d.client() as c:
            try:
                for _ in range(6):
                    replies.append(c.cmd("FOO"))
            except (ConnectionClosed, OSError):
                pass
            self.assertTrue(c.closed or c.wait_closed(t(5)), "not disconnected: %s" % replies)
        self.assertLessEqual(len(replies), 4, replies)
        self.assertEqual(replies[-1].code, 421, replies)
        self.assertRegex(replies[-1].lines[-1], r"^4\.7\.0 .*too many errors")
        self.assertTrue(d.running())

    def test_idle_timeout(self):
        d = self.daemon(settings={"smtpd_timeout": "2s"})
        with d.client(timeout=t(15)) as c:
            c.ehlo()
            t0 = time.monotonic()
            r = c.reply(t(15))
            waited = time.monotonic() - t0
            self.assertEqual(r.code, 421, r)
            self.assertRegex(r.lines[-1], r"^4\.4\.2 .*timeout exceeded")
            self.assertGreater(waited, 1.5, "timed out too early")
            self.assertLess(waited, t(8), "timed out too late")
            self.assertTrue(c.wait_closed(t(5)))
        # timeouts in DATA too
        with d.client(timeout=t(15)) as c:
            self.open_tx(c)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(HDRS + b"partial")
            r = c.reply(t(15))
            self.assertEqual(r.code, 421, r)
            self.assertTrue(c.wait_closed(t(5)))
        self.assertEqual(d.queued_ids(), set())
        self.assertTrue(d.running())

    def test_connection_count_per_client(self):
        d = self.daemon(settings={"smtpd_client_connection_count_limit": "2"})
        a = d.client()
        b = d.client()
        try:
            with d.client(greet=False) as c:
                r = c.reply()
                self.assertEqual(r.code, 421, r)
                self.assertRegex(r.lines[-1], r"^4\.7\.0 .*too many connections from 127\.0\.0\.1")
                self.assertTrue(c.wait_closed(t(5)))
            # another client address is not affected
            with d.client(source="127.0.0.2") as c2:
                self.assertReply(c2.cmd("QUIT"), 221)
        finally:
            a.cmd("QUIT")
            a.close()
        # one slot is free again once the daemon has seen the close
        deadline = time.monotonic() + t(5)
        while True:
            with d.client(greet=False) as c:
                r = c.reply()
                if r.code == 220 or time.monotonic() > deadline:
                    break
            time.sleep(0.1)
        self.assertEqual(r.code, 220, r)
        b.close()

    def test_closed_sessions_are_not_counted(self):
        """A client that closes its sessions and at once opens new ones is not refused because
        the daemon has not yet read the closes: the daemon is stopped while the listener turns
        ready first and the old sessions close after it, so on resuming it accepts both new
        connections before it sees the two closes."""
        d = self.daemon(settings={"smtpd_client_connection_count_limit": "2"})
        a = d.client()
        b = d.client()
        os.kill(d.pid(), signal.SIGSTOP)
        try:
            c = d.client(greet=False)  # the kernel completes the handshake meanwhile
            a.close()
            b.close()
            e = d.client(greet=False)
        finally:
            os.kill(d.pid(), signal.SIGCONT)
        with c, e:
            for x in (c, e):
                r = x.reply()
                self.assertEqual(r.code, 220, r)
            # still two at most: a third live session is refused
            with d.client(greet=False) as f:
                r = f.reply()
                self.assertEqual(r.code, 421, r)
            self.assertReply(c.cmd("QUIT"), 221)
            self.assertReply(e.cmd("QUIT"), 221)
        # only the third one was refused (its line is in the log once the closes are logged)
        d.wait_log(r"disconnect from", count=4)
        self.assertEqual(d.maillog().count("Connection concurrency limit exceeded"), 1)

    def test_stuck_sessions_still_count(self):
        """A session that has answered QUIT but whose client leaves a pile of replies unread can
        linger until smtpd_timeout: it still counts against smtpd_client_connection_count_limit,
        so one client cannot hold more sessions than the limit that way (an ending session whose
        replies are out does not count: test_closed_sessions_are_not_counted)."""
        d = self.daemon(settings={"smtpd_client_connection_count_limit": "2",
                                  "smtpd_session_buffer_limit": "8m",
                                  "smtpd_junk_command_limit": "1000000"})
        a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        a.settimeout(t(30))
        a.connect(("127.0.0.1", d.smtp_port))
        fa = a.makefile("rb")
        try:
            self.assertTrue(fa.readline().startswith(b"220 "))
            a.sendall(b"EHLO client.example\r\n")
            while not fa.readline().startswith(b"250 "):
                pass
            # 5.6 MB of replies, never read: more than the kernel buffers take, less than the
            # 8 MB the daemon may hold, so it reads everything, answers the QUIT and waits
            a.sendall(b"RSET\r\n" * 400000 + b"QUIT\r\n")
            time.sleep(t(1.5))
            with d.client() as b:
                with d.client(greet=False) as c:
                    r = c.reply()
                    self.assertEqual(r.code, 421, r)
                self.assertReply(b.cmd("NOOP"), 250)
        finally:
            fa.close()
            a.close()

    def test_session_limit(self):
        d = self.daemon(settings={"smtpd_session_limit": "3"})
        held = [d.client(source="127.0.0.%d" % i) for i in (1, 2, 3)]
        try:
            with d.client(source="127.0.0.4", greet=False) as c:
                r = c.reply()
                self.assertReply(r, 421, "4.3.2 Service not available, too many sessions")
                self.assertTrue(c.wait_closed(t(5)))
            for h in held:
                self.assertReply(h.cmd("NOOP"), 250)
        finally:
            for h in held:
                h.close()
        deadline = time.monotonic() + t(5)
        while True:
            with d.client(greet=False) as c:
                r = c.reply()
            if r.code == 220 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(r.code, 220, r)

    def test_queue_minfree(self):
        d = self.daemon(settings={"queue_minfree": "2000000"},
                        env={"MTA_TEST_FREE_BYTES": "1000000"})
        with d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 452, "4.3.1 Insufficient system storage")
        self.assertEqual(d.queued_ids(), set())

    def test_queue_minfree_with_size(self):
        d = self.daemon(settings={"queue_minfree": "1000000"},
                        env={"MTA_TEST_FREE_BYTES": "10000000"})
        with d.client() as c:
            c.ehlo()
            # 9 MB usable: 8 MB needs 1.5 x 8 = 12 MB, as Postfix checks
            self.assertReply(c.cmd("MAIL FROM:<s@example.org> SIZE=8000000"), 452,
                             "4.3.1 Insufficient system storage")
            self.assertReply(c.cmd("MAIL FROM:<s@example.org> SIZE=1000"), 250, "2.1.0 Ok")
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(HDRS + b"fits\r\n.\r\n")
            self.assertReply(c.reply(), 250, "2.0.0 Ok: queued as ")

    def test_client_that_does_not_read_its_replies(self):
        """A client that pipelines far more commands than its replies fit in the socket: the
        daemon stops reading at smtpd_session_buffer_limit of unsent replies, and once the
        client reads, every reply arrives, in order, and the session goes on."""
        # 5.6 MB of replies: more than the kernel buffers hold (4 MB send buffer at most), so
        # some stay in the daemon, which must stop reading and not buffer the rest
        n = 400000
        # (RSET is a junk command: the flood must stay under smtpd_junk_command_limit)
        d = self.daemon(settings={"smtpd_session_buffer_limit": "65536",
                                  "smtpd_junk_command_limit": "1000000"})
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.settimeout(t(30))
        sock.connect(("127.0.0.1", d.smtp_port))
        f = sock.makefile("rb")
        self.assertTrue(f.readline().startswith(b"220 "))
        sock.sendall(b"EHLO client.example\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        sent = threading.Event()

        def writer():
            sock.sendall(b"RSET\r\n" * n + b"NOOP\r\n")
            sent.set()

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        # the daemon has stopped reading: 2.4 MB of commands cannot all be sent (a 64 KiB send
        # buffer here, the daemon's receive buffer does not grow while it does not read)
        time.sleep(t(1.5))
        self.assertFalse(sent.is_set(), "the daemon kept reading a client that does not read")
        self.assertLess(d.rss_kb(), 32 * 1024)
        for i in range(n):
            line = f.readline()
            self.assertEqual(line, b"250 2.0.0 Ok\r\n", "reply %d" % i)
        self.assertTrue(f.readline().startswith(b"250 2.0.0 Ok"))  # the NOOP
        w.join(t(10))
        self.assertTrue(sent.is_set())
        sock.sendall(b"QUIT\r\n")
        self.assertTrue(f.readline().startswith(b"221 "))
        f.close()
        sock.close()

    def test_replies_over_buffer_limit(self):
        """A reading client pipelines more commands than smtpd_session_buffer_limit holds
        replies for: the daemon pauses reading at the limit and goes on once its replies are
        out, also when the socket took them all at once."""
        n = 3000  # 42 KB of replies against a 4 KiB limit
        d = self.daemon(settings={"smtpd_session_buffer_limit": "4096",
                                  "smtpd_junk_command_limit": "1000000"})
        with d.client(timeout=t(10)) as c:
            c.ehlo()
            c.send(b"RSET\r\n" * n)
            for i in range(n):
                self.assertReply(c.reply(), 250, "2.0.0 Ok")
            self.assertReply(c.cmd("QUIT"), 221)

    def test_garbage_without_newline(self):
        d = self.daemon()
        junk = bytes(b for b in os.urandom(4000) if b not in (10, 13))[:1000]
        with d.client() as c:
            c.send(junk)
            time.sleep(0.3)
            try:
                c.send(b"\r\n")
                r = c.reply()
                self.assertGreaterEqual(r.code, 500, r)
            except (ConnectionClosed, OSError):
                pass
        self.assertTrue(d.running(), "daemon died on 1000 garbage bytes")
        with d.client() as c:
            c.ehlo()
            self.assertReply(c.cmd("QUIT"), 221)

    def test_endless_line_memory_bounded(self):
        env = {}
        if mtatest.SANITIZE:
            # ASan's quarantine keeps freed memory resident (256 MB by default),
            # which would measure allocation churn instead of what is held.
            env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                                   ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64").lstrip(":")
        d = self.daemon(env=env)
        time.sleep(0.2)
        rss0 = d.rss_kb()
        total = 0
        closed = False
        stop = time.monotonic() + t(8)
        chunk = b"Z" * 65536
        s = RawClient(d.smtp_port, timeout=t(10))
        try:
            s.greeting()
            s.sock.setblocking(False)
            while total < 32 * 1024 * 1024 and time.monotonic() < stop:
                try:
                    total += s.sock.send(chunk)
                except BlockingIOError:
                    time.sleep(0.01)  # the daemon stopped reading: backpressure
                except OSError:
                    closed = True
                    break  # the daemon closed the connection: also fine
            rss1 = d.rss_kb()
        finally:
            s.close()
        self.assertTrue(d.running(), "daemon died on an endless line")
        grown_mb = (rss1 - rss0) / 1024.0
        sys.stderr.write("[RSS +%.1f MB after %d bytes, closed=%s] " % (grown_mb, total, closed))
        self.assertLess(grown_mb, 24 if mtatest.SANITIZE else 16,
                        "RSS grew by %.1f MB after %d bytes without newline" % (grown_mb, total))
        with d.client() as c:
            c.ehlo()

    def test_queue_minfree_while_streaming(self):
        # 2 MB usable above queue_minfree: a body of more than 2 / 1.5 MB fails at end of
        # data, with or without (or with an understated) SIZE=; small mail still queues
        d = self.daemon(settings={"queue_minfree": "1000000"},
                        env={"MTA_TEST_FREE_BYTES": "3000000"})
        big = HDRS + (b"x" * 998 + b"\r\n") * 2000 + b".\r\n"  # about 2 MB
        with d.client() as c:
            c.ehlo()
            for mail in ("MAIL FROM:<s@example.org>", "MAIL FROM:<s@example.org> SIZE=1000"):
                self.assertReply(c.cmd(mail), 250)
                self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
                self.assertReply(c.cmd("DATA"), 354)
                c.send(big)
                self.assertEqual(c.reply(timeout=t(20)).full(),
                                 "452 4.3.1 Insufficient system storage")
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(HDRS + b"small\r\n.\r\n")
            self.assertReply(c.reply(), 250, "2.0.0 Ok: queued as ")
        self.assertEqual(len(self.wait_queued(d, 1)), 1)
        self.assertRegex(d.stderr() + d.maillog(), r"not enough free space in the queue")
        deadline = time.monotonic() + t(5)
        while d.tmp_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(d.tmp_files(), [], "the refused bodies were left in tmp/")


if __name__ == "__main__":
    mtatest.main()
