#!/usr/bin/env python3
"""
relay_memory.py - peak resident memory of mtad while it relays N large messages
(default 20 x 50 MB) to one next hop over N connections at once
(default_destination_concurrency_limit >= N). Needs no Postfix: a small sink in
this script holds every greeting until all N connections are open, so that the N
deliveries overlap, and then swallows the messages (counting bytes, keeping
none). Prints one Markdown table row; the figures for README.md come from here.

    MTAD=build/mtad MTACTL=build/mtactl python3 bench/relay_memory.py [-n 20] [-s 50] [--tls]

Uses tests/integration/mtatest.py to run the daemon (loopback only, private temp
dir, removed at the end). Not a test: nothing here asserts.
"""

import argparse
import os
import shutil
import smtplib
import socket
import ssl
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402


class BarrierSink:
    """SMTP sink on 127.0.0.1: greets only once N connections are open (or after
    HOLD seconds), then accepts everything; DATA is read in large pieces and dropped."""

    def __init__(self, n, hold, tls_dir=None):
        self.n, self.hold = n, hold
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.cond = threading.Condition()
        self.opened, self.done, self.bytes = 0, 0, 0
        self.released_at, self.done_at = None, None
        self.tls = None
        if tls_dir:
            cert, key = smtpsink.make_cert(tls_dir)
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(cert, key)
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self):
        self.sock.close()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def wait_done(self, timeout):
        with self.cond:
            self.cond.wait_for(lambda: self.done >= self.n, timeout)
            return self.done

    def _session(self, conn):
        with self.cond:
            self.opened += 1
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.opened >= self.n, self.hold)
            if self.released_at is None:
                self.released_at = time.monotonic()
        buf = b""

        def line():
            nonlocal buf
            while b"\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    raise EOFError
                buf += data
            i = buf.index(b"\n")
            out, buf = buf[:i + 1], buf[i + 1:]
            return out.decode("ascii", "replace").strip()

        def send(s):
            conn.sendall(s.encode() + b"\r\n")

        try:
            send("220 sink.bench ESMTP")
            while True:
                verb = line().split(" ", 1)[0].upper()
                if verb == "EHLO":
                    send("250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME" +
                         ("\r\n250-STARTTLS" if self.tls and not isinstance(conn, ssl.SSLSocket)
                          else "") + "\r\n250 SIZE")
                elif verb == "STARTTLS":
                    send("220 2.0.0 Ready")
                    conn = self.tls.wrap_socket(conn, server_side=True)
                    buf = b""
                elif verb in ("MAIL", "RCPT", "RSET", "NOOP", "HELO"):
                    send("250 2.0.0 Ok")
                elif verb == "DATA":
                    send("354 go ahead")
                    tail, n = buf[-5:], len(buf)
                    while tail != b"\r\n.\r\n":
                        data = conn.recv(262144)
                        if not data:
                            raise EOFError
                        n += len(data)
                        tail = (tail + data)[-5:]
                    buf = b""
                    with self.cond:
                        self.done += 1
                        self.bytes += n
                        if self.done >= self.n:
                            self.done_at = time.monotonic()
                        self.cond.notify_all()
                    send("250 2.0.0 Ok: queued")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("502 5.5.2 Error: command not recognized")
        except (EOFError, OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


def status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(field + ":"):
                return int(ln.split()[1])
    return 0


def body_of(size):
    """body_of - a message of SIZE bytes in 78-byte lines, one in ten starting with a dot."""
    head = b"From: bench@example.com\r\nTo: rcpt@example.net\r\nSubject: relay memory\r\n\r\n"
    lines = [(b"." if i % 10 == 0 else b"") + (b"%05d " % i) + b"x" * 70 + b"\r\n"
             for i in range(1000)]
    block = b"".join(lines)
    reps = max(1, (size - len(head)) // len(block) + 1)
    return (head + block * reps)[:size - 2] + b"\r\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20, help="messages, relayed over as many connections")
    ap.add_argument("-s", type=int, default=50, help="message size in MB (10^6 bytes)")
    ap.add_argument("--tls", action="store_true", help="STARTTLS to the sink")
    ap.add_argument("--label", default=os.path.basename(mtatest.MTAD), help="first column")
    a = ap.parse_args()
    size = a.s * 1000 * 1000
    tmp = tempfile.mkdtemp(prefix="relay-memory-", dir=os.environ.get("BENCH_TMP"))
    os.chmod(tmp, 0o711)
    sink = BarrierSink(a.n, 300, tmp if a.tls else None)
    d = mtatest.Daemon(tmp, {"smart_relay": "[127.0.0.1]:%d" % sink.port,
                             "message_size_limit": str(size + 1000000),
                             "default_destination_concurrency_limit": str(max(20, a.n)),
                             "smtp_tls_security_level": "may" if a.tls else "none"})
    try:
        d.start()
        body = body_of(size)
        idle = d.rss_kb()
        s = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=600)
        s.ehlo("bench.example")
        for _ in range(a.n):
            s.sendmail("bench@example.com", ["rcpt@example.net"], body)
        s.quit()
        queued = d.rss_kb()
        peak, t0 = 0, time.monotonic()
        while sink.done < a.n and time.monotonic() - t0 < 600:
            peak = max(peak, d.rss_kb())
            time.sleep(0.02)
        hwm = status_kb(d.proc.pid, "VmHWM")
        secs = (sink.done_at or time.monotonic()) - (sink.released_at or t0)
        print("| %s | %d x %d MB%s | %.1f | %.1f | %.1f | %.1f | %d/%d | %.1f |"
              % (a.label, a.n, a.s,
                 " TLS" if a.tls else "", idle / 1024, queued / 1024, peak / 1024,
                 hwm / 1024, sink.done, a.n, secs))
    finally:
        sink.close()
        if d.running():
            d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print("| mtad | load | idle RSS MB | after intake MB | peak RSS while relaying MB "
          "| VmHWM MB | delivered | relay s |")
    print("|---|---|---|---|---|---|---|---|")
    main()
