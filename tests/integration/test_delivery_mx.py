"""
test_delivery_mx.py - delivery without smart_relay: MX lookups through a
private dnsmasq (dns_servers), Python sinks on port 25 of 127.X.Y.10-16, a /24 that
this process claims at random (mtatest.loopback_block), so that another run of this
file at the same time (another build's ctest, a chroot sharing the network) cannot
take the same addresses:
lowest preference first, fallback to the next MX when one is dead or answers
4xx, implicit MX (A record), null MX and NXDOMAIN bounces, SERVFAIL deferral,
recipients in several domains in one message (a recipient delivered while another
destination stalls is not delivered again after a stop or a crash), a 5xx bounce that arrives at the
sender's own MX as a parseable DSN, cc_mta copies, STARTTLS to a TLS sink.
Not here: the smart_relay path and queue administration (test_delivery_relay.py).
"""

import email
import email.policy
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsserver  # noqa: E402
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

NET = mtatest.loopback_block(25, range(10, 17)) or "127.0.0."  # None: not root (skipped)
A_PRIMARY, A_BACKUP, A_DEAD, A_NOMX, A_SENDER, A_CC, A_TLS = (
    NET + str(h) for h in range(10, 17))


def at(addr):
    """at - "[ADDR]" as a regex, for the relay=host[ADDR]:25 of a log line."""
    return re.escape("[%s]" % addr)

RECORDS = [
    "mx-host=one.test,mx1.one.test,10",
    "host-record=mx1.one.test,%s" % A_PRIMARY,
    # two.test: preferred MX is dead (nothing listens), the backup works
    "mx-host=two.test,mxa.two.test,10",
    "mx-host=two.test,mxb.two.test,20",
    "host-record=mxa.two.test,%s" % A_DEAD,
    "host-record=mxb.two.test,%s" % A_BACKUP,
    # soft.test: preferred MX answers 4xx to MAIL, backup takes it
    "mx-host=soft.test,mxa.soft.test,10",
    "mx-host=soft.test,mxb.soft.test,20",
    "host-record=mxa.soft.test,%s" % A_TLS,
    "host-record=mxb.soft.test,%s" % A_BACKUP,
    # no MX: the A record is the implicit MX
    "host-record=nomx.test,%s" % A_NOMX,
    # RFC 7505 null MX
    "mx-host=nullmx.test,.,0",
    # the sender's domain, where bounces go
    "mx-host=sender.test,mx.sender.test,10",
    "host-record=mx.sender.test,%s" % A_SENDER,
    "mx-host=cc.test,mx.cc.test,10",
    "host-record=mx.cc.test,%s" % A_CC,
    "mx-host=tls.test,mx.tls.test,10",
    "host-record=mx.tls.test,%s" % A_TLS,
    # servfail.test is forwarded to a server that does not answer -> SERVFAIL
    "server=/servfail.test/127.0.0.1#9",
]


def can_bind_25():
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((A_PRIMARY, 25))
        return True
    except OSError:
        return False


class Staller:
    """A server on ADDR:25 that accepts connections and never says anything."""

    def __init__(self, addr):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 25))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.conns = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)

    def wait_connections(self, n, timeout):
        deadline = time.monotonic() + timeout
        while len(self.conns) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.conns)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


class DeliveryMxTest(mtatest.MtaTestCase):

    def setUp(self):
        super().setUp()
        if not dnsserver.available():
            self.skipTest("dnsmasq is not installed")
        if not can_bind_25():
            self.skipTest("cannot bind %s:25 (needs root)" % A_PRIMARY)
        self.dns = dnsserver.DnsServer(self.tmp, RECORDS).start()
        self.addCleanup(self.dns.stop)

    def sink(self, addr, **kw):
        s = smtpsink.Sink(addr, 25, **kw).start()
        self.addCleanup(s.stop)
        return s

    def mtad(self, extra=None):
        s = {"dns_servers": self.dns.server, "smart_relay": "", "minimal_backoff_time": "1s",
             "maximal_backoff_time": "2s", "queue_run_delay": "1s"}
        s.update(extra or {})
        return self.daemon(s)

    def send(self, d, sender, rcpts, body=b"Subject: mx test\r\n\r\nbody\r\n"):
        s = d.smtp()
        try:
            s.sendmail(sender, rcpts, body)
        finally:
            s.quit()

    def test_mx_delivery_and_multi_domain_message(self):
        one = self.sink(A_PRIMARY)
        backup = self.sink(A_BACKUP)
        nomx = self.sink(A_NOMX)
        d = self.mtad()
        self.send(d, "s@sender.test", ["a@one.test", "b@two.test", "c@nomx.test", "d@One.Test"])
        d.wait_log(r"to=<a@one\.test>, relay=mx1\.one\.test" + at(A_PRIMARY)
                   + r":25, .*status=sent",
                   t(10))
        d.wait_log(r"to=<d@One\.Test>, relay=mx1\.one\.test" + at(A_PRIMARY)
                   + r":25, .*status=sent",
                   t(10))
        # two.test: mxa is dead; the attempt falls through to mxb in the same delivery
        d.wait_log(r"to=<b@two\.test>, relay=mxb\.two\.test" + at(A_BACKUP)
                   + r":25, .*status=sent",
                   t(15))
        d.wait_log(r"to=<c@nomx\.test>, relay=nomx\.test" + at(A_NOMX) + r":25, .*status=sent",
                   t(10))
        self.assertEqual(sorted(one.wait_messages(1)[0].rcpts), ["a@one.test", "d@One.Test"])
        self.assertEqual(backup.wait_messages(1)[0].rcpts, ["b@two.test"])
        self.assertEqual(nomx.wait_messages(1)[0].rcpts, ["c@nomx.test"])
        d.wait_log(r": removed$", t(5))
        self.assertEqual(d.log_lines(r"status=deferred"), [])

    def test_4xx_at_first_mx_falls_back_to_next(self):
        soft = self.sink(A_TLS, replies={"mail": ["451 4.3.2 try later"]})
        backup = self.sink(A_BACKUP)
        d = self.mtad()
        self.send(d, "s@sender.test", ["x@soft.test"])
        d.wait_log(r"to=<x@soft\.test>, relay=mxb\.soft\.test" + at(A_BACKUP)
                   + r":25, .*status=sent",
                   t(15))
        self.assertEqual(len(backup.wait_messages(1)), 1)
        self.assertEqual(soft.messages, [])

    def test_dns_failures(self):
        sender_mx = self.sink(A_SENDER)
        d = self.mtad({"maximal_backoff_time": "1h", "minimal_backoff_time": "1h"})
        self.send(d, "s@sender.test", ["u@nxdomain.test"])
        d.wait_log(r"to=<u@nxdomain\.test>, relay=none, .*dsn=5\.1\.2, status=bounced \(Host or "
                   r"domain name not found\. Name service error for name=nxdomain\.test type=MX: "
                   r"Host not found\)$", t(10))
        self.send(d, "s@sender.test", ["u@nullmx.test"])
        d.wait_log(r"to=<u@nullmx\.test>, relay=none, .*dsn=5\.1\.0, status=bounced \(Domain "
                   r"nullmx\.test does not accept mail \(nullMX\)\)$", t(10))
        self.send(d, "s@sender.test", ["u@servfail.test"])
        d.wait_log(r"to=<u@servfail\.test>, relay=none, .*dsn=4\.4\.3, status=deferred \(Host or "
                   r"domain name not found\. Name service error for name=servfail\.test type=MX: "
                   r"Host not found, try again\)$", t(20))
        # the two bounces reach the sender's MX
        self.assertEqual(len(sender_mx.wait_messages(2, t(10))), 2)

    def test_5xx_bounce_arrives_at_senders_mx_as_dsn(self):
        self.sink(A_PRIMARY, rcpt_map={"nobody@one.test": "550 5.1.1 <nobody@one.test>: "
                                                          "Recipient address rejected"})
        sender_mx = self.sink(A_SENDER)
        d = self.mtad()
        self.send(d, "alice@sender.test", ["nobody@one.test"],
                  b"Subject: lost\r\nMessage-Id: <m1@sender.test>\r\n\r\nhello\r\n")
        b = sender_mx.wait_messages(1, t(15))
        self.assertEqual(len(b), 1, d.maillog())
        self.assertEqual((b[0].mail_from, b[0].rcpts), ("", ["alice@sender.test"]))
        msg = email.message_from_bytes(b[0].data, policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        parts = list(msg.iter_parts())
        status = [dict(x.items()) for x in parts[1].get_payload()]
        self.assertEqual(status[1]["Final-Recipient"], "rfc822; nobody@one.test")
        self.assertEqual(status[1]["Status"], "5.1.1")
        self.assertEqual(status[1]["Remote-MTA"], "dns; mx1.one.test")
        self.assertEqual(parts[2].get_payload()[0]["Message-Id"], "<m1@sender.test>")
        d.wait_log(r"from=<>, size=\d+, nrcpt=1 \(queue active\)", t(5))

    def test_cc_mta_gets_an_independent_copy(self):
        one = self.sink(A_PRIMARY)
        cc = self.sink(A_CC)
        d = self.mtad({"cc_mta": "cc.test"})
        self.send(d, "s@sender.test", ["a@one.test", "b@one.test"])
        self.assertEqual(sorted(one.wait_messages(1, t(10))[0].rcpts), ["a@one.test", "b@one.test"])
        copy = cc.wait_messages(1, t(10))
        self.assertEqual(len(copy), 1)
        self.assertEqual((copy[0].mail_from, sorted(copy[0].rcpts)),
                         ("s@sender.test", ["a@one.test", "b@one.test"]))
        d.wait_log(r"relay=mx\.cc\.test" + at(A_CC) + r":25, .*status=sent", t(5), count=2)
        d.wait_log(r": removed$", t(5))

    def test_a_parallel_run_of_this_file_takes_other_addresses(self):
        # another process running these tests at the same time (ctest in a second build,
        # a chroot on the same network) holds its sender's MX sink while we start ours
        child = subprocess.Popen(
            [sys.executable, "-c",
             "import sys, time; sys.path.insert(0, %r); import test_delivery_mx as m, smtpsink;"
             "smtpsink.Sink(m.A_SENDER, 25).start(); print(m.A_SENDER, flush=True);"
             "sys.stdin.read()" % os.path.dirname(os.path.abspath(__file__))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

        def stop_child():
            child.stdin.close()
            try:
                child.wait(t(10))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(t(10))
            child.stdout.close()

        self.addCleanup(stop_child)
        ready, _, _ = select.select([child.stdout], [], [], t(10))
        other = child.stdout.readline().strip() if ready else ""
        self.assertRegex(other, r"^127\.\d+\.\d+\.14$", "the other run did not start")
        self.sink(A_SENDER)  # was: OSError: [Errno 98] Address already in use
        self.assertNotEqual(other, A_SENDER)

    def test_starttls_to_tls_sink(self):
        tls = self.sink(A_TLS, tls_dir=self.tmp)
        d = self.mtad()
        self.send(d, "s@sender.test", ["t@tls.test"])
        m = tls.wait_messages(1, t(15))
        self.assertEqual(len(m), 1, d.maillog())
        self.assertTrue(m[0].tls)
        d.wait_log(r"Untrusted TLS connection established to mx\.tls\.test" + at(A_TLS) + r":25: "
                   r"TLSv1\.3 with cipher \S+ \(\d+/\d+ bits\)$", t(5))
        d.wait_log(r"to=<t@tls\.test>, relay=mx\.tls\.test" + at(A_TLS) + r":25, .*status=sent",
                   t(5))


    def stalled_destination_then_restart(self, crash):
        # one connection per destination; nomx.test never greets, so the second
        # message's nomx.test job waits in the queue while its one.test recipient is
        # delivered. After a stop (or a crash) that recipient must not get it again.
        one = self.sink(A_PRIMARY)
        staller = Staller(A_NOMX)
        self.addCleanup(staller.stop)
        d = self.mtad({"default_destination_concurrency_limit": "1"})
        self.send(d, "s@sender.test", ["first@nomx.test"])
        self.assertEqual(staller.wait_connections(1, t(10)), 1)
        self.send(d, "s@sender.test", ["a@one.test", "b@nomx.test"])
        d.wait_log(r"to=<a@one\.test>, relay=mx1\.one\.test" + at(A_PRIMARY)
                   + r":25, .*status=sent",
                   t(10))
        if crash:
            time.sleep(t(1))  # the status file is written right after the result
            d.kill()
        else:
            self.assertEqual(d.stop(), 0, d.stderr()[-2000:])
        staller.stop()
        nomx = self.sink(A_NOMX)
        d.start()
        msgs = nomx.wait_messages(2, t(15))
        self.assertEqual(sorted(r for m in msgs for r in m.rcpts), ["b@nomx.test", "first@nomx.test"])
        d.wait_log(r": removed$", t(5), count=2)
        time.sleep(t(1))
        self.assertEqual([m.rcpts for m in one.messages], [["a@one.test"]])

    def test_delivered_recipient_not_sent_again_after_sigterm(self):
        self.stalled_destination_then_restart(crash=False)

    def test_delivered_recipient_not_sent_again_after_kill_9(self):
        self.stalled_destination_then_restart(crash=True)


if __name__ == "__main__":
    mtatest.main()
