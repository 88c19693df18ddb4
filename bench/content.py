"""
content.py - issue 15's content-pipeline benchmark, run by bench.py (`bench/run.sh dkim`):
durable intake throughput with DKIM signing, side by side:
  mtad                      no signing (the reference of this run)
  mtad + dkim_sign          the built-in signer (RSA 2048, docs/dkim.md)
  mtad + OpenDKIM milter    smtpd_milters = one OpenDKIM in sign mode, the same key
  Postfix + OpenDKIM milter Postfix's smtpd_milters, the same OpenDKIM, the same key
each at 1 and 10 sessions (--content-sessions), deliveries deferred (closed relay port).
Without Postfix (no smtp-source, no postfix) the mtad rows still run, driven by a small
Python SMTP client instead of smtp-source, and the Postfix column says why it is empty.
Not for: anything but 127.0.0.1; installing (run.sh installs Postfix; opendkim comes from
scripts/deps.sh test).
"""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

OPENDKIM = shutil.which("opendkim") or "/usr/sbin/opendkim"
DOMAIN = "example.com"  # the domain of bench.py's SENDER: the From: both signers see
SELECTOR = "bench"
CONTENT_MAX = 10000  # messages per run at most: each run is signed, so keep it bounded


def make_key(work):
    """make_key - an RSA 2048 key (PEM, 0600) both signers use."""
    path = os.path.join(work, "dkim-bench.key")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", path], check=True, capture_output=True, timeout=60)
    os.chmod(path, 0o600)
    return path


class OpenDkim:
    """One opendkim in sign mode on a free loopback port, its config under WORK."""

    def __init__(self, B, work, key):
        self.B, self.work, self.key = B, work, key
        self.port = B.free_port()
        self.proc = None

    def start(self):
        os.makedirs(self.work, exist_ok=True)
        conf = os.path.join(self.work, "opendkim.conf")
        with open(conf, "w") as f:
            f.write("Syslog no\nMode s\nDomain %s\nSelector %s\nKeyFile %s\n"
                    "Socket inet:%d@127.0.0.1\nCanonicalization relaxed/relaxed\n"
                    "SignatureAlgorithm rsa-sha256\nInternalHosts 127.0.0.0/8\n"
                    "RequireSafeKeys no\nPidFile %s\n"
                    % (DOMAIN, SELECTOR, self.key, self.port,
                       os.path.join(self.work, "opendkim.pid")))
        self.err = open(os.path.join(self.work, "opendkim.stderr"), "wb")
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", conf], stdout=self.err,
                                     stderr=self.err)
        self.B.at_cleanup(self.stop)
        if not self.B.wait_listen(self.port) or self.proc.poll() is not None:
            raise RuntimeError("opendkim did not come up: %s" % self.tail())
        return self

    def tail(self):
        try:
            with open(os.path.join(self.work, "opendkim.stderr"), errors="replace") as f:
                return f.read()[-500:]
        except OSError:
            return ""

    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc is not None:
            self.B.kill_proc(self.proc, 5)
            self.proc = None
            self.err.close()


def py_source(port, sessions, count, size, limit):
    """py_source - smtp-source -d's load from Python (when Postfix's tools are absent):
    SESSIONS connections, COUNT messages of SIZE body bytes in all, each connection sending
    its share one after the other. Returns (wall seconds, 0 or the number of failures)."""
    body = b"From: <bench@%s>\r\nTo: <rcpt@example.net>\r\nSubject: bench\r\n\r\n" % DOMAIN.encode()
    line = b"x" * 78 + b"\r\n"
    body += line * max(1, size // len(line))
    lock = threading.Lock()
    state = {"left": count, "fail": 0}
    deadline = time.monotonic() + limit

    def take():
        with lock:
            if state["left"] <= 0:
                return False
            state["left"] -= 1
            return True

    def expect(f, code):
        while True:
            ln = f.readline()
            if not ln:
                raise OSError("connection closed")
            if ln[3:4] != b"-":
                if not ln.startswith(code):
                    raise OSError(ln.decode(errors="replace").strip())
                return

    def worker():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                f = s.makefile("rb")
                expect(f, b"220")
                s.sendall(b"EHLO client.example\r\n")
                expect(f, b"250")
                while time.monotonic() < deadline and take():
                    s.sendall(b"MAIL FROM:<bench@%s>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n"
                              % DOMAIN.encode())
                    expect(f, b"250")
                    expect(f, b"250")
                    expect(f, b"354")
                    s.sendall(body + b".\r\n")
                    expect(f, b"250")
                s.sendall(b"QUIT\r\n")
        except OSError:
            with lock:
                state["fail"] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()))
    return time.monotonic() - t0, state["fail"] + max(0, state["left"])


def load(B, server, sessions, count, size, extra_pid=None):
    """load - B.one_load, or the Python load when smtp-source is absent; the CPU of
    EXTRA_PID's tree (the milter) is added to the server's."""
    cpu0 = B.tree_cpu(extra_pid) if extra_pid else 0
    if os.access(B.SMTP_SOURCE, os.X_OK):
        res = B.one_load(server, sessions, count, size)
    else:
        root = server.pid()
        c0 = B.tree_cpu(root)
        el, rc = py_source(server.smtp_port, sessions, count, size, max(120, count // 20))
        B.wait_quiet(root)
        res = {"rc": rc, "intake_s": el, "intake_rate": count / el if el > 0 else 0,
               "cpu": B.tree_cpu(root) - c0}
    if extra_pid:
        res["cpu"] += B.tree_cpu(extra_pid) - cpu0
    return res


def bench_content(B, work, sessions_list, count, size, out):
    """bench_content - the four configurations at each session count; one table into OUT."""
    count = min(count, CONTENT_MAX)
    have_postfix = all(os.access(p, os.X_OK) for p in (B.POSTFIX, B.SMTP_SOURCE))
    have_opendkim = os.access(OPENDKIM, os.X_OK)
    key = make_key(work)
    names = ["mtad", "mtad + dkim_sign", "mtad + OpenDKIM milter", "Postfix + OpenDKIM milter"]
    rows = []
    for n in sessions_list:
        figures = {}
        for name in names:
            if "OpenDKIM" in name and not have_opendkim:
                figures[name] = "opendkim not installed"
                continue
            if name.startswith("Postfix") and not have_postfix:
                figures[name] = "postfix not installed"
                continue
            try:
                figures[name] = run_one(B, name, work, n, count, size, key)
            except RuntimeError as e:  # e.g. an mtad without smtpd_milters: say so, go on
                B.log("content %s: %s" % (name, e))
                why = [ln for ln in str(e).splitlines() if ln.startswith("Error")] or [str(e)]
                figures[name] = "did not start: %s" % why[0].strip()[:100]
        rows.append((n, figures))
    driver = "smtp-source -d" if os.access(B.SMTP_SOURCE, os.X_OK) else \
        "a Python SMTP client (smtp-source absent)"
    lines = ["### Content pipeline intake: %s into the server, deliveries deferred, DKIM RSA 2048 "
             "relaxed/relaxed (%d messages of %d bytes)" % (driver, count, size), "",
             "msg/s (server CPU s, with the milter's own CPU where there is one)", "",
             "| sessions | %s |" % " | ".join(names), "|---:|" + "---:|" * len(names)]
    for n, figures in rows:
        cells = []
        for name in names:
            f = figures[name]
            if isinstance(f, str):
                cells.append("(%s)" % f)
                continue
            cell = "%.0f (%.2f s)" % (f["intake_rate"], f["cpu"])
            if f["rc"] != 0:
                cell += " [load exit %s]" % f["rc"]
            if f.get("signed") is not None and f["signed"] < count:
                cell += " [%d signed]" % f["signed"]
            cells.append(cell)
        lines.append("| %d | %s |" % (n, " | ".join(cells)))
    out.extend(lines + [""])


def run_one(B, name, work, n, count, size, key):
    """run_one - one configuration NAME at N sessions: start, load, stop; its figures."""
    d = tempfile.mkdtemp(prefix="content-%d." % n, dir=work)
    os.chmod(d, 0o755)
    port = B.closed_port()
    milter = None
    if "OpenDKIM" in name:
        milter = OpenDkim(B, os.path.join(d, "opendkim"), key).start()
    B.settle()
    if name.startswith("Postfix"):
        srv = B.PostfixInstance(d, port)
        srv.write_config_plain = srv.write_config

        def write_config(srv=srv, milter=milter):
            srv.write_config_plain()
            with open(os.path.join(srv.conf, "main.cf"), "a") as f:
                f.write("smtpd_milters = inet:127.0.0.1:%d\nnon_smtpd_milters =\n"
                        "milter_default_action = tempfail\n" % milter.port)
        srv.write_config = write_config
        srv.start()
    else:
        st = {}
        if name == "mtad + dkim_sign":
            st = {"dkim_sign": "yes", "dkim_selector": SELECTOR, "dkim_domains": DOMAIN,
                  "dkim_key_file": key}
        elif milter:
            st = {"smtpd_milters": "inet:127.0.0.1:%d" % milter.port}
        srv = B.Mtad(d, port, st).start()
    B.log("content %s: %d sessions, %d messages of %d bytes ..." % (name, n, count, size))
    signed = B.LogCounter(srv.maillog, "DKIM-Signature field added")
    res = load(B, srv, n, count, size, milter.pid() if milter else None)
    res["signed"] = signed.poll() if name == "mtad + dkim_sign" else None
    srv.stop()
    if milter:
        milter.stop()
    B.log("  %s" % {k: (round(v, 2) if isinstance(v, float) else v)
                    for k, v in res.items()})
    return res

