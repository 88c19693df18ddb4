"""
test_delivery_hygiene.py - what a strict next hop sees of relayed mail: a sink
that enforces RFC 5321's line limits (a text line at most 1000 bytes with its
CRLF, counted as sent; a command line at most 512) and refuses a bare CR or LF
in the message with 500, as strict servers do. Mail with a 5000-byte line (in
a header and in the body, ASCII and UTF-8) and with bare CRs is accepted through
mtad (smtpd_forbid_bare_newline = normalize keeps a bare CR as content) and
must be relayed to it and accepted: long lines broken with CRLF SPACE
(smtp_line_length_limit), bare CRs sent as spaces, nothing else changed, no
bounce. Both ways the relay reads a message: the copy kept in memory (small)
and the spool file (> 64 KiB).
Not here: the line-breaking function's corner cases (tests/unit/test_relay_util.c).
"""

import os
import re
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import t  # noqa: E402


class StrictSink:
    """An SMTP server on 127.0.0.1 that is strict about lines: 500 for a command
    longer than 512 bytes or with a bare CR/LF; after DATA, 500 at the dot when any
    line was longer than 1000 bytes (CRLF and a transparency dot included) or held
    a bare CR or LF. Accepted messages (dot-unstuffed) are kept in .messages;
    .refusals holds the reasons of refused ones."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.messages, self.refusals = [], []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass

    def wait(self, n, timeout):
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) + len(self.refusals) >= n, timeout)
            return list(self.messages), list(self.refusals)

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    @staticmethod
    def _lines(conn):
        """_lines - every line as sent, up to and including its LF (b"" at the end)."""
        buf = b""
        while True:
            i = buf.find(b"\n")
            if i >= 0:
                line, buf = buf[:i + 1], buf[i + 1:]
                yield line
                continue
            data = conn.recv(65536)
            if not data:
                if buf:
                    yield buf
                return
            buf += data

    def _session(self, conn):
        conn.settimeout(t(30))

        def send(s):
            conn.sendall(s.encode() + b"\r\n")

        try:
            send("220 strict.test ESMTP")
            lines = self._lines(conn)
            for raw in lines:
                bad = None
                if len(raw) > 512:
                    bad = "500 5.5.2 Error: command line too long"
                elif not raw.endswith(b"\r\n") or b"\r" in raw[:-2]:
                    bad = "500 5.5.2 Error: bare <CR> or <LF> received"
                if bad:
                    send(bad)
                    continue
                cmd = raw[:-2].decode("ascii", "replace")
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    send("250-strict.test")
                    send("250-8BITMIME")
                    send("250 SIZE 50000000")
                elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                    send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                elif verb == "DATA":
                    send("354 End data with <CR><LF>.<CR><LF>")
                    data, why = [], None
                    for line in lines:
                        if line == b".\r\n":
                            break
                        if len(line) > 1000 and why is None:
                            why = "500 5.5.2 Error: line of %d bytes" % len(line)
                        if (not line.endswith(b"\r\n") or b"\r" in line[:-2]) and why is None:
                            why = "500 5.5.2 Error: bare <CR> or <LF> received"
                        data.append(line[1:] if line.startswith(b".") else line)
                    else:
                        return
                    with self.cond:
                        if why:
                            self.refusals.append(why)
                        else:
                            self.messages.append(b"".join(data))
                        n = len(self.messages)
                        self.cond.notify_all()
                    send(why or "250 2.0.0 Ok: queued as STRICT%d" % n)
                else:
                    send("502 5.5.2 Error: command not recognized")
        except OSError:
            pass
        finally:
            conn.close()


def unbreak(data):
    """unbreak - DATA with every CRLF SPACE that breaks a long line taken out."""
    return data.replace(b"\r\n ", b"")


class DeliveryHygieneTest(mtatest.MtaTestCase):

    def relay_to_strict_sink(self, body):
        sink = StrictSink()
        self.addCleanup(sink.stop)
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port,
                         "minimal_backoff_time": "1h", "maximal_backoff_time": "2h",
                         "queue_run_delay": "1h"})
        s = d.smtp()
        try:
            s.ehlo("client.example")
            s.sendmail("a@src.test", ["b@dst.test"], body, mail_options=["BODY=8BITMIME"])
        finally:
            s.quit()
        msgs, refused = sink.wait(1, t(15))
        self.assertEqual(refused, [], "the strict next hop refused the message")
        self.assertEqual(len(msgs), 1)
        line = d.wait_log(r"to=<b@dst\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*"
                          r"status=sent \(250 2\.0\.0 Ok: queued as STRICT1\)$" % sink.port, t(10))
        self.assertEqual(len(line), 1)
        self.assertEqual(d.log_lines(r"status=bounced|status=deferred"), [])
        return d, msgs[0]

    def message(self, filler):
        long_subject = b"Subject: " + b"s" * 5000 + b"\r\n"
        utf8 = "\u00e9\u20ac\U0001F600".encode("utf-8") * 700  # 6300 bytes, no ASCII
        body = (b"From: a@src.test\r\nTo: b@dst.test\r\n" + long_subject +
                b"Content-Type: text/plain; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: 8bit\r\n\r\n"
                b"first\r\n" + filler +
                b"x" * 5000 + b"\r\n"
                b"." + b"y" * 2000 + b"\r\n"
                b"old\rmac\rlines\r\n" + b"z" * 997 + b"\r\r\n" +
                utf8 + b"\r\n"
                b"end\r\n")
        # what the next hop must get: bare CRs as spaces, long lines broken, nothing else
        want = body.replace(b"\r\n", b"\n").replace(b"\r", b" ").replace(b"\n", b"\r\n")
        return body, want, utf8

    def check(self, d, got, want, utf8):
        self.assertTrue(got.startswith(b"Received: "), got[:200])
        # the client's part, after mtad's Received: header (itself folded, never broken)
        start = got.index(b"\r\nFrom: a@src.test\r\n") + 2
        ghead, _, gbody = unbreak(got[start:]).partition(b"\r\n\r\n")
        whead, _, wbody = want.partition(b"\r\n\r\n")
        self.assertEqual(gbody, wbody)
        # the client's headers in order, then those intake adds
        added = [h for h in ghead.split(b"\r\n") if h.startswith((b"Message-Id: ", b"Date: "))]
        self.assertEqual(ghead.split(b"\r\n")[:len(whead.split(b"\r\n"))], whead.split(b"\r\n"))
        self.assertEqual(len(ghead.split(b"\r\n")), len(whead.split(b"\r\n")) + len(added))
        for line in got.split(b"\r\n"):
            self.assertLessEqual(len(line), 998)
        # the UTF-8 line was broken between characters: every piece decodes on its own
        pieces = [l for l in got.split(b"\r\n") if max(l, default=0) >= 0x80]
        self.assertGreaterEqual(len(pieces), len(utf8) // 998, pieces[:1])
        for p in pieces:
            p.decode("utf-8")  # raises on a cut sequence
        d.wait_log(r"\b[0-9A-F]+: breaking line > 998 bytes with <CR><LF>SPACE$", t(5))

    def test_small_message_from_memory(self):
        body, want, utf8 = self.message(b"")
        self.assertLess(len(body), 60000)
        d, got = self.relay_to_strict_sink(body)
        self.check(d, got, want, utf8)

    def test_large_message_from_spool_file(self):
        filler = b"".join(b"filler line %06d with some text to make it long\r\n" % i
                          for i in range(4000))
        body, want, utf8 = self.message(filler)
        self.assertGreater(len(body), 128 * 1024)
        d, got = self.relay_to_strict_sink(body)
        self.check(d, got, want, utf8)

    def test_bare_cr_alone(self):
        # short lines only: the bare CRs alone would make a strict next hop refuse the mail
        body = b"Subject: cr\r\n\r\nold\rmac\rlines\r\n\r\r\n.\rdot\r\nend\r"
        d, got = self.relay_to_strict_sink(body)
        self.assertTrue(got.endswith(b"\r\n\r\nold mac lines\r\n \r\n. dot\r\nend \r\n"), got)
        self.assertEqual(d.log_lines(r"breaking line"), [])


if __name__ == "__main__":
    mtatest.main()
