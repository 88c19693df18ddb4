"""
smtpsink.py - a small SMTP sink for delivery tests: listens on ADDR:PORT
(e.g. 127.0.0.2:25), answers each stage with scripted replies (e.g. 451 then
250 at end of data), offers STARTTLS with a throw-away self-signed certificate
when asked, keeps every accepted message in memory and writes it to
OUTDIR/<addr>-<n>.eml. Runs in a thread of the test (Sink.start/stop) or as a
program (python3 smtpsink.py ADDR PORT OUTDIR).
Not here: the daemon under test (mtatest.py) or DNS (dnsserver.py).
Standard library only.
"""

import os
import socket
import ssl
import subprocess
import sys
import threading
import time


def make_cert(directory, cn="sink.test"):
    """make_cert - a self-signed certificate and key in DIRECTORY; returns (cert, key)."""
    cert = os.path.join(directory, "sink-cert.pem")
    key = os.path.join(directory, "sink-key.pem")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "2", "-subj", "/CN=" + cn],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


class Message:
    def __init__(self, mail_from, mail_params, rcpts, rcpt_params, data, tls, helo):
        self.mail_from = mail_from      # str, without <>
        self.mail_params = mail_params  # str after the address (e.g. "SIZE=12 BODY=8BITMIME")
        self.rcpts = rcpts              # list of str
        self.rcpt_params = rcpt_params  # list of str
        self.data = data                # bytes as received, dot-unstuffed, CRLF, without the final dot
        self.tls = tls
        self.helo = helo

    def __repr__(self):
        return "<Message from=%r to=%r %d bytes tls=%s>" % (self.mail_from, self.rcpts,
                                                            len(self.data), self.tls)


class Sink:
    """One listening SMTP sink. Replies are lists consumed in order; the last entry repeats.
    Stages: greeting, ehlo, mail, rcpt, data, dot. rcpt_map maps an address to a fixed RCPT reply."""

    def __init__(self, addr="127.0.0.2", port=25, outdir=None, replies=None, rcpt_map=None,
                 tls_dir=None, pipelining=True, esmtp=True, dsn=False, size=None, smtputf8=True,
                 name="sink.test"):
        self.addr, self.port, self.outdir = addr, port, outdir
        self.replies = {k: list(v) for k, v in (replies or {}).items()}
        self.rcpt_map = dict(rcpt_map or {})
        self.pipelining, self.esmtp, self.dsn, self.size, self.smtputf8 = (
            pipelining, esmtp, dsn, size, smtputf8)
        self.name = name
        self.messages = []
        self.sessions = 0
        self.commands = []  # every command line received (str), for protocol assertions
        self.lock = threading.Lock()
        self.tls_ctx = None
        if tls_dir:
            cert, key = make_cert(tls_dir)
            self.tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_ctx.load_cert_chain(cert, key)
        self.sock = None
        self.thread = None
        self.stopping = False
        self.n = 0

    # -- life cycle --
    def start(self):
        fam = socket.AF_INET6 if ":" in self.addr else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.addr, self.port))
        if self.port == 0:
            self.port = self.sock.getsockname()[1]
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping = True
        if self.thread:
            self.thread.join(5)
        if self.sock:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    def wait_messages(self, n, timeout=10.0):
        """wait_messages - wait until N messages arrived; returns the list."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        with self.lock:
            return list(self.messages)

    # -- the server --
    def _reply(self, stage, default):
        with self.lock:
            lst = self.replies.get(stage)
            if not lst:
                return default
            return lst.pop(0) if len(lst) > 1 else lst[0]

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.sessions += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        conn.settimeout(30)
        f = conn.makefile("rb")
        tls = False
        helo = None

        def send(line):
            conn.sendall(line.encode("utf-8") + b"\r\n")

        try:
            greet = self._reply("greeting", "220 %s ESMTP sink" % self.name)
            send(greet)
            if not greet.startswith("2"):
                line = f.readline()
                send("221 2.0.0 Bye")
                return
            mail = None
            rcpts, rparams = [], []
            mparams = ""
            while True:
                raw = f.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self.lock:
                    self.commands.append(line)
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO" and self.esmtp:
                    r = self._reply("ehlo", "250")
                    if not r.startswith("250"):
                        send(r)
                        continue
                    helo = line[5:]
                    ext = [self.name]
                    if self.pipelining:
                        ext.append("PIPELINING")
                    ext.append("SIZE %d" % self.size if self.size else "SIZE")
                    ext.append("8BITMIME")
                    if self.smtputf8:
                        ext.append("SMTPUTF8")
                    if self.dsn:
                        ext.append("DSN")
                    if self.tls_ctx and not tls:
                        ext.append("STARTTLS")
                    for i, e in enumerate(ext):
                        send("250%s%s" % ("-" if i < len(ext) - 1 else " ", e))
                    mail, rcpts, rparams = None, [], []
                elif verb == "HELO" or (verb == "EHLO" and not self.esmtp):
                    if verb == "EHLO":
                        send("502 5.5.2 Error: command not recognized")
                        continue
                    helo = line[5:]
                    send("250 %s" % self.name)
                elif verb == "STARTTLS" and self.tls_ctx and not tls:
                    send("220 2.0.0 Ready to start TLS")
                    f.close()
                    conn = self.tls_ctx.wrap_socket(conn, server_side=True)
                    f = conn.makefile("rb")
                    tls = True
                    mail, rcpts, rparams = None, [], []
                elif verb == "MAIL":
                    r = self._reply("mail", "250 2.1.0 Ok")
                    if r.startswith("2"):
                        rest = line[10:]
                        addr, _, mparams = rest.partition(">")
                        mail = addr.lstrip("<")
                        mparams = mparams.strip()
                        rcpts, rparams = [], []
                    send(r)
                elif verb == "RCPT":
                    rest = line[8:]
                    addr, _, p = rest.partition(">")
                    addr = addr.lstrip("<")
                    if mail is None:
                        send("503 5.5.1 Error: need MAIL command")
                        continue
                    r = self.rcpt_map.get(addr) or self._reply("rcpt", "250 2.1.5 Ok")
                    if r.startswith("2"):
                        rcpts.append(addr)
                        rparams.append(p.strip())
                    send(r)
                elif verb == "DATA":
                    if mail is None or not rcpts:
                        send("554 5.5.1 Error: no valid recipients")
                        continue
                    r = self._reply("data", "354 End data with <CR><LF>.<CR><LF>")
                    send(r)
                    if not r.startswith("354"):
                        continue
                    chunks = []
                    while True:
                        l = f.readline()
                        if not l:
                            return
                        if l == b".\r\n":
                            break
                        if l.startswith(b"."):
                            l = l[1:]
                        chunks.append(l)
                    data = b"".join(chunks)
                    r = self._reply("dot", None)
                    with self.lock:
                        self.n += 1
                        n = self.n
                    if r is None:
                        r = "250 2.0.0 Ok: queued as SINK%d" % n
                    if r.startswith("2"):
                        msg = Message(mail, mparams, rcpts, rparams, data, tls, helo)
                        if self.outdir:
                            p = os.path.join(self.outdir, "%s-%d.eml" % (self.addr, n))
                            with open(p, "wb") as out:
                                out.write(data)
                        with self.lock:
                            self.messages.append(msg)
                    send(r)
                    mail, rcpts, rparams = None, [], []
                elif verb == "RSET":
                    mail, rcpts, rparams = None, [], []
                    send("250 2.0.0 Ok")
                elif verb == "NOOP":
                    send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("502 5.5.2 Error: command not recognized")
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass


def main():
    import signal
    addr, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    s = Sink(addr, port, outdir).start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    s.stop()


if __name__ == "__main__":
    main()
