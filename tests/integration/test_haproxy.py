"""
test_haproxy.py - scale-out behind a load balancer: Debian's real HAProxy in TCP
mode (its own configuration in the test's temp dir, free loopback ports, started
and stopped by the test) with `send-proxy-v2` (and `send-proxy`, v1) in front of
two mtad instances with their own data volumes and smtpd_upstream_proxy_protocol
= haproxy. Clients connect from 127.0.0.2 (in smtpd_trusted_networks) and
127.0.0.3 (not); HAProxy itself connects from 127.0.0.1. Checked: the relay
decision, the mail log and Received: follow the original address; both
instances take mail (roundrobin); SIGTERM to one loses nothing (every accepted
message reaches the sink, the stopped instance's spool delivered by a new mtad
started on its data volume) and the other takes all traffic. Without HAProxy:
a bad or missing header gets Postfix's warning and 421 4.3.0; the per-client
connection limit counts the proxied client; SMTPS behind the proxy.
"""

import os
import re
import shutil
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import scriptmilter  # noqa: E402
import smtpsink  # noqa: E402
import tlskeys  # noqa: E402
from mtatest import t  # noqa: E402

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
TRUSTED, OTHER = "127.0.0.2", "127.0.0.3"

# Ports of daemons whose start-up probe must open with a PROXY header (v2 LOCAL, as
# HAProxy's health checks send it): the harness's probe expects the banner at once.
_LOCAL_PORTS = set()
_RawClient = mtatest.RawClient


class _ProbeClient(_RawClient):
    def __init__(self, port, *a, **kw):
        super().__init__(port, *a, **kw)
        if port in _LOCAL_PORTS:
            self.send(V2_SIG + b"\x20\x00\x00\x00")


mtatest.RawClient = _ProbeClient


class ProxiedDaemon(mtatest.Daemon):
    def _start_once(self, timeout):
        _LOCAL_PORTS.add(self.smtp_port)
        try:
            return super()._start_once(timeout)
        finally:
            _LOCAL_PORTS.discard(self.smtp_port)


def v1_header(src, dst="127.0.0.1", sport=40000, dport=25):
    return ("PROXY TCP4 %s %s %d %d\r\n" % (src, dst, sport, dport)).encode()


def v2_header(src, dst="127.0.0.1", sport=40000, dport=25):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
    return V2_SIG + b"\x21\x11" + struct.pack(">H", len(body)) + body


CLIENT2 = r"client=unknown\[127\.0\.0\.2\]"


def settled_count(d, pattern):
    """settled_count - lines of D's mail log matching PATTERN, once the count has stayed the
    same for 0.3 s (the log writer is a thread: lines appear a little after the event)."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + t(10)
    while time.monotonic() < deadline:
        n = len(re.findall(pattern, d.maillog()))
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= 0.3:
            break
        time.sleep(0.05)
    return last


class HAProxy:
    """One haproxy process in the foreground (-db) with its own configuration."""

    def __init__(self, workdir, servers, mode="send-proxy-v2"):
        self.port = mtatest.free_port()
        self.cfg = os.path.join(workdir, "haproxy.cfg")
        self.log = os.path.join(workdir, "haproxy.out")
        lines = ["global", "  maxconn 256",
                 "defaults", "  mode tcp", "  timeout connect 2s", "  timeout client 30s",
                 "  timeout server 30s", "  retries 3", "  option redispatch",
                 "frontend fe", "  bind 127.0.0.1:%d" % self.port, "  default_backend be",
                 "backend be", "  balance roundrobin"]
        for i, port in enumerate(servers):
            # health checks carry the PROXY header too (v2: LOCAL), as the instances expect
            lines.append("  server m%d 127.0.0.1:%d %s check check-send-proxy inter 300ms "
                         "fall 1 rise 1" % (i, port, mode))
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.out = open(self.log, "ab")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdout=self.out,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + t(10)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("haproxy exited: %s" % open(self.log).read())
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("haproxy did not listen: %s" % open(self.log).read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(t(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


NEED_HAPROXY = unittest.skipUnless(os.path.exists(HAPROXY),
                                   "haproxy not installed (scripts/deps.sh test)")


class HAProxyTest(mtatest.MtaTestCase):

    def instance(self, name, extra=None, start=True):
        s = {"smtpd_upstream_proxy_protocol": "haproxy",
             "smtpd_trusted_networks": TRUSTED + "/32",
             "minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
             "queue_run_delay": "1s"}
        s.update(extra or {})
        d = ProxiedDaemon(self.tmp, s, name=name)
        self.daemons.append(d)
        self.addCleanup(self._stop_daemon, d)
        if start:
            d.start()
        return d

    def sink(self):
        s = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(s.stop)
        return s

    def haproxy(self, servers, mode):
        h = HAProxy(self.tmp, servers, mode)
        self.addCleanup(h.stop)
        time.sleep(0.5)  # the first health checks mark the servers up
        return h

    def send(self, port, source, tag, rcpt="user@remote.example"):
        """send - one message through PORT from SOURCE; the RCPT reply (code, text) and
        the end-of-data reply, or None when RCPT was refused."""
        s = smtplib.SMTP(local_hostname="client.example", timeout=t(15),
                         source_address=(source, 0))
        try:
            s.connect("127.0.0.1", port)
            s.ehlo()
            s.mail("sender@client.example")
            code, text = s.rcpt(rcpt)
            if code != 250:
                return (code, text.decode()), None
            body = ("Subject: %s\r\nMessage-ID: <%s@client.example>\r\n\r\nbody\r\n"
                    % (tag, tag)).encode()
            code2, text2 = s.data(body)
            return (code, text.decode()), (code2, text2.decode())
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass

    def check_policy_logs_received(self, mode):
        sink = self.sink()
        relay = {"smart_relay": "[127.0.0.1]:%d" % sink.port}
        a = self.instance("mtaA", relay)
        b = self.instance("mtaB", relay)
        h = self.haproxy([a.smtp_port, b.smtp_port], mode)
        # T T O O: roundrobin gives each instance a trusted and an untrusted client
        for i in range(4):
            src, tag = (TRUSTED, "ok%d" % i) if i < 2 else (OTHER, "no%d" % i)
            rc, dot = self.send(h.port, src, tag)
            if i < 2:
                self.assertEqual(rc[0], 250, rc)
                self.assertEqual(dot[0], 250, dot)
            else:
                self.assertEqual(rc, (554, "5.7.1 <user@remote.example>: Relay access denied"))
        for i in range(2, 4):
            rc, dot = self.send(h.port, TRUSTED, "ok%d" % i)
            self.assertEqual(rc[0], 250, rc)
            self.assertEqual(dot[0], 250, dot)
        msgs = sink.wait_messages(4, t(15))
        self.assertEqual(sorted(m.data.split(b"Subject: ")[1][:3] for m in msgs),
                         [b"ok0", b"ok1", b"ok2", b"ok3"])
        time.sleep(0.5)  # nothing else arrives (the refused ones were never queued)
        self.assertEqual(len(sink.messages), 4)
        for m in msgs:  # Received: names the original client, never the proxy
            head = m.data.split(b"\r\nSubject:")[0]
            self.assertTrue(head.startswith(b"Received: from client.example (unknown "
                                            b"[127.0.0.2])\r\n"), head)
            self.assertNotIn(b"[127.0.0.1]", head)
        for d in (a, b):  # both instances took mail; their logs name the original clients
            log = d.maillog()
            self.assertRegex(log, r"smtpd\[\d+\]: connect from unknown\[127\.0\.0\.2\]")
            self.assertRegex(log, r": [0-9A-F]+: client=unknown\[127\.0\.0\.2\]")
            self.assertRegex(log, r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.3\]: 554 "
                                  r"5\.7\.1 <user@remote\.example>: Relay access denied")
            self.assertNotIn("client=unknown[127.0.0.1]", log)
            self.assertNotIn("haproxy read", log)  # the health checks' headers are good too
        return sink, a, b, h

    @NEED_HAPROXY
    def test_send_proxy_v1(self):
        self.check_policy_logs_received("send-proxy")

    @NEED_HAPROXY
    def test_send_proxy_v2_failover_loses_nothing(self):
        sink = self.sink()
        # A defers everything (its relay is a port nobody listens on): what it accepted
        # stays in its spool until a new mtad on its data volume delivers it
        a = self.instance("mtaA", {"smart_relay": "[127.0.0.1]:%d" % mtatest.free_port()})
        b = self.instance("mtaB", {"smart_relay": "[127.0.0.1]:%d" % sink.port})
        h = self.haproxy([a.smtp_port, b.smtp_port], "send-proxy-v2")
        accepted = []
        for i in range(6):  # T T O O T T: each instance gets trusted and untrusted clients
            if i in (2, 3):
                rc, dot = self.send(h.port, OTHER, "no%d" % i)
                self.assertEqual(rc[0], 554, rc)
                continue
            rc, dot = self.send(h.port, TRUSTED, "pre%d" % i)
            self.assertEqual(rc[0], 250, rc)
            self.assertEqual(dot[0], 250, dot)
            accepted.append("pre%d" % i)
        n_a, n_b = settled_count(a, CLIENT2), settled_count(b, CLIENT2)
        self.assertEqual((n_a, n_b), (2, 2))  # roundrobin: both take mail
        self.assertRegex(a.maillog(), r"reject: RCPT from unknown\[127\.0\.0\.3\]")
        # traffic goes on while A stops: every reply is 250 or the client sees an error
        stop = threading.Event()
        errors = []

        def traffic():
            i = 0
            while not stop.is_set():
                tag = "mid%d" % i
                i += 1
                try:
                    rc, dot = self.send(h.port, TRUSTED, tag)
                    if dot and dot[0] == 250:
                        accepted.append(tag)
                    else:
                        errors.append((tag, rc, dot))
                except (smtplib.SMTPException, OSError) as e:
                    errors.append((tag, repr(e)))  # refused at connect: not accepted
                time.sleep(0.01)
        th = threading.Thread(target=traffic)
        th.start()
        time.sleep(0.5)
        self.assertEqual(a.stop(), 0)
        time.sleep(1.0)  # the health check marks A down
        stop.set()
        th.join(t(30))
        logged_b = settled_count(b, CLIENT2)
        for i in range(4):  # the other instance takes all traffic
            rc, dot = self.send(h.port, TRUSTED, "post%d" % i)
            self.assertEqual(rc[0], 250, rc)
            self.assertEqual(dot[0], 250, dot)
            accepted.append("post%d" % i)
        self.assertEqual(settled_count(b, CLIENT2), logged_b + 4)
        held = a.queued_ids()
        self.assertTrue(held, "A should hold deferred mail")
        sys.stderr.write("failover: %d accepted, %d refused during the stop, %d held by A\n"
                         % (len(accepted), len(errors), len(held)))
        # a new mtad on A's data volume delivers A's spool (shared-nothing: no other path)
        a2 = self.daemon({"data_volume": a.data_volume, "smart_relay": "[127.0.0.1]:%d" % sink.port,
                          "minimal_backoff_time": "1s", "queue_run_delay": "1s"}, name="mtaA2")
        msgs = sink.wait_messages(len(accepted), t(30))
        got = sorted(re.search(rb"Subject: (\S+)", m.data).group(1).decode() for m in msgs)
        self.assertEqual(got, sorted(accepted), "errors during failover: %r" % errors)
        self.assertEqual(a2.queued_ids(), set())

    def test_bad_header_timeout_and_local(self):
        a = self.instance("mtaA", {"smtpd_upstream_proxy_timeout": "1s"})
        with _RawClient(a.smtp_port) as c:  # no header: a plain SMTP client
            c.send(b"EHLO x\r\n")
            self.assertEqual(str(c.reply()), "421 %s Server local error"
                             % ("4.3.0 " + mtatest.HOSTNAME))
        a.wait_log(r"warning: haproxy read: unrecognized protocol header: EHLO x\\r\\n$", t(5))
        a.wait_log(r"connect from unknown\[unknown\]$", t(5))
        with _RawClient(a.smtp_port) as c:  # silence: the timeout
            t0 = time.monotonic()
            self.assertEqual(c.reply(t(5)).code, 421)
            self.assertGreater(time.monotonic() - t0, 0.8)
        a.wait_log(r"warning: haproxy read: timeout error$", t(5))
        with _RawClient(a.smtp_port) as c:  # v1 UNKNOWN is refused (as Postfix does)
            c.send(b"PROXY UNKNOWN\r\n")
            self.assertEqual(c.reply().code, 421)
        a.wait_log(r"warning: haproxy read: bad or missing protocol type: PROXY UNKNOWN\\r\\n$",
                   t(5))
        with _RawClient(a.smtp_port) as c:  # the header in pieces, then the client's EHLO
            h = v2_header(OTHER, sport=4242)
            c.send(h[:7])
            time.sleep(0.2)
            c.send(h[7:])
            c.greeting()
            c.ehlo()
        a.wait_log(r"connect from unknown\[127\.0\.0\.3\]$", t(5))

    def test_client_limit_counts_the_proxied_client(self):
        a = self.instance("mtaA", {"smtpd_client_connection_count_limit": "2"})
        held = []
        for i in range(2):
            c = _RawClient(a.smtp_port)
            c.send(v1_header(TRUSTED, sport=1000 + i))
            c.greeting()
            held.append(c)
        try:
            with _RawClient(a.smtp_port) as c:
                c.send(v2_header(TRUSTED))
                r = c.reply()
                self.assertEqual(str(r), "421 4.7.0 %s Error: too many connections from "
                                 "127.0.0.2" % mtatest.HOSTNAME)
            with _RawClient(a.smtp_port) as c:  # another client behind the same proxy
                c.send(v2_header(OTHER))
                c.greeting()
            a.wait_log(r"warning: Connection concurrency limit exceeded: 3 from "
                       r"unknown\[127\.0\.0\.2\]", t(5))
        finally:
            for c in held:
                c.close()

    def test_smtps_and_submission_behind_the_proxy(self):
        """One setting for every SMTP listener: SMTPS (the ClientHello right behind the
        header, in the same segment) and submission read the header too."""
        keys = os.path.join(self.tmp, "keys")
        tlskeys.make_keys(keys)
        sub = mtatest.free_port()
        sasl = tlskeys.make_sasl(os.path.join(self.tmp, "sasl"))
        a = self.instance("mtaA", tlskeys.tls_settings(keys, submission_port=str(sub), **sasl))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", int(a.settings()["smtps_port"])), t(10))
        try:
            hello = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = ctx.wrap_bio(hello[0], hello[1])
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            raw.sendall(v2_header(OTHER, sport=5555, dport=465) + hello[1].read())
            while True:  # finish the handshake over the same socket
                data = raw.recv(65536)
                self.assertTrue(data, "closed during the TLS handshake")
                hello[0].write(data)
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    out = hello[1].read()
                    if out:
                        raw.sendall(out)
            out = hello[1].read()
            if out:
                raw.sendall(out)
            buf = b""
            while b"\r\n" not in buf:
                try:
                    buf += obj.read(4096)
                except ssl.SSLWantReadError:
                    hello[0].write(raw.recv(65536))
            self.assertTrue(buf.startswith(b"220 "), buf)
        finally:
            raw.close()
        a.wait_log(r"connect from unknown\[127\.0\.0\.3\]$", t(5))
        with _RawClient(sub) as c:
            c.send(v1_header(TRUSTED, sport=6666, dport=587))
            c.greeting()
            self.assertEqual(c.cmd("QUIT").code, 221)
        a.wait_log(r"disconnect from unknown\[127\.0\.0\.2\] quit=1 commands=1$", t(5))

    def test_milter_sees_the_proxied_client(self):
        """A milter's connect event and its _ macro name the client the header names."""
        m = scriptmilter.ScriptMilter().start()
        self.addCleanup(m.stop)
        a = self.instance("mtaA", {"smtpd_milters": m.spec})
        with _RawClient(a.smtp_port) as c:
            c.send(v2_header(OTHER, sport=4711))
            c.greeting()
            c.ehlo()
            self.assertEqual(c.cmd("QUIT").code, 221)
        deadline = time.monotonic() + t(5)
        while time.monotonic() < deadline:
            conns = [e for e in m.find("connect") if e.data.split(b"\0")[0] == b"unknown"]
            if any(b"127.0.0.3" in e.data for e in conns):
                break
            time.sleep(0.05)
        ev = [e for e in m.find("connect") if b"127.0.0.3" in e.data]
        self.assertTrue(ev, [e.data for e in m.find("connect")])
        name, rest = ev[-1].data.split(b"\0", 1)
        self.assertEqual((name, rest[:1], rest[3:].rstrip(b"\0")), (b"unknown", b"4", b"127.0.0.3"))
        self.assertEqual(ev[-1].macros.get("_"), "unknown [127.0.0.3]")

    def test_ipv6_client_named_by_the_header(self):
        """TCP6 in the header: the IPv6 client is checked against smtpd_trusted_networks,
        logged and written into Received: as an IPv6 literal."""
        sink = self.sink()
        a = self.instance("mtaA", {"smtpd_trusted_networks": "2001:db8::/32",
                                   "smart_relay": "[127.0.0.1]:%d" % sink.port})
        for src, want in (("2001:db8::7", "250"), ("2001:db9::7", "554")):
            with _RawClient(a.smtp_port) as c:
                c.send(("PROXY TCP6 %s 2001:db8::1 40000 25\r\n" % src).encode())
                c.greeting()
                c.ehlo()
                self.assertEqual(c.cmd("MAIL FROM:<s@client.example>").code, 250)
                r = c.cmd("RCPT TO:<user@remote.example>")
                self.assertEqual(str(r.code), want, str(r))
                if r.code == 250:
                    self.assertEqual(c.cmd("DATA").code, 354)
                    self.assertEqual(c.cmd("Subject: v6\r\n\r\nbody\r\n.").code, 250)
                c.cmd("QUIT")
        msgs = sink.wait_messages(1, t(10))
        self.assertEqual(len(msgs), 1)
        self.assertTrue(msgs[0].data.startswith(b"Received: from client.example (unknown "
                                                b"[IPv6:2001:db8::7])\r\n"), msgs[0].data[:200])
        a.wait_log(r"client=unknown\[2001:db8::7\]$", t(5))
        a.wait_log(r"NOQUEUE: reject: RCPT from unknown\[2001:db9::7\]: 554 5\.7\.1 ", t(5))


if __name__ == "__main__":
    mtatest.main()
