"""
test_milter_filters.py - smtpd_milters against real filters from Debian, each started by
the test on a free loopback port with its own configuration in the test's temp directory
(their system services stay stopped):
- OpenDKIM in sign mode (key made by opendkim-genkey): the relayed message carries a
  DKIM-Signature that dkimpy verifies with the generated public key, and the same message
  with a changed body fails (the verifier can fail).
- rspamd's proxy worker in milter mode (self_scan, no redis): a GTUBE message is refused
  with rspamd's reply text, a clean one is relayed with the headers rspamd adds (asked for
  with extended_spam_headers: by default it adds none to a clean message).
Not here: the scripted milter for every protocol action (test_milter.py).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# dkimpy is Debian's python3-dkim: run it with the system interpreter
VERIFY = r"""
import sys, dkim
rec = open(sys.argv[1], "rb").read()
ok = dkim.verify(sys.stdin.buffer.read(), dnsfunc=lambda name, timeout=5: rec)
print("verified" if ok else "FAILED")
sys.exit(0 if ok else 1)
"""


def wait_port(port, proc, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


class MilterFiltersTest(mtatest.MtaTestCase):

    def spawn(self, argv, port, timeout, log):
        out = open(log, "wb")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def stop():
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            out.close()
        self.addCleanup(stop)
        if not wait_port(port, p, timeout):
            with open(log, "rb") as f:
                self.fail("%s did not listen on %d:\n%s" % (argv[0], port, f.read()[-3000:]))
        return p

    def sink(self):
        s = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(s.stop)
        return s

    def send(self, d, body, sender="a@src.test", rcpt="b@dst.test"):
        s = d.smtp()
        try:
            s.ehlo("client.example")
            s.mail(sender)
            s.rcpt(rcpt)
            try:
                return s.data(body)
            except Exception as e:  # smtplib raises on a refused DATA
                return e.smtp_code, e.smtp_error
        finally:
            s.quit()

    # --- OpenDKIM ---

    def start_opendkim(self):
        if not shutil.which("opendkim") or not shutil.which("opendkim-genkey"):
            self.skipTest("opendkim not installed (scripts/deps.sh)")
        d = os.path.join(self.tmp, "opendkim")
        os.makedirs(d)
        subprocess.run(["opendkim-genkey", "-D", d, "-d", "src.test", "-s", "sel", "-b", "2048"],
                       check=True, timeout=t(60))
        port = mtatest.free_port()
        with open(os.path.join(d, "opendkim.conf"), "w") as f:
            f.write("Syslog no\nMode s\nDomain src.test\nSelector sel\n"
                    "KeyFile %s/sel.private\nSocket inet:%d@127.0.0.1\n"
                    "Canonicalization relaxed/relaxed\nPidFile %s/opendkim.pid\n"
                    "RequireSafeKeys no\nInternalHosts 127.0.0.1\n" % (d, port, d))
        self.spawn(["opendkim", "-f", "-x", os.path.join(d, "opendkim.conf")], port, t(20),
                   os.path.join(d, "opendkim.log"))
        # the TXT record as published: the quoted strings of sel.txt joined
        with open(os.path.join(d, "sel.txt")) as f:
            txt = f.read()
        parts = txt.split('"')[1::2]
        with open(os.path.join(d, "record"), "w") as f:
            f.write("".join(parts))
        return port, os.path.join(d, "record")

    def verify(self, record, msg):
        r = subprocess.run(["/usr/bin/python3", "-c", VERIFY, record], input=msg,
                           capture_output=True, timeout=t(30))
        return r.returncode == 0, r.stdout.decode() + r.stderr.decode()

    def test_opendkim_signs_relayed_mail(self):
        port, record = self.start_opendkim()
        sink = self.sink()
        d = self.daemon({"smtpd_milters": "inet:127.0.0.1:%d" % port,
                         "smart_relay": "[127.0.0.1]:%d" % sink.port})
        body = (b"From: Alice <a@src.test>\r\nTo: b@dst.test\r\nSubject: signed by opendkim\r\n"
                b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@src.test>\r\n\r\n"
                b"Hello,\r\nthis body is signed.\r\n")
        code, text = self.send(d, body)
        self.assertEqual(code, 250, text)
        msg = sink.wait_messages(1, t(15))[0].data
        self.assertIn(b"DKIM-Signature:", msg)
        self.assertIn(b"d=src.test", msg)
        ok, why = self.verify(record, msg)
        self.assertTrue(ok, why)
        # the verifier can fail: the same message with one body byte changed
        bad = msg.replace(b"this body is signed.", b"this body is signeD.")
        self.assertNotEqual(bad, msg)
        ok, why = self.verify(record, bad)
        self.assertFalse(ok, why)

    # --- rspamd ---

    def start_rspamd(self):
        if not shutil.which("rspamd"):
            self.skipTest("rspamd not installed (scripts/deps.sh)")
        d = os.path.join(self.tmp, "rspamd")
        for sub in ("local/local.d", "db", "run", "log"):
            os.makedirs(os.path.join(d, sub))
        port = mtatest.free_port()
        conf = os.path.join(d, "rspamd.conf")
        with open(conf, "w") as f:
            f.write('.include "$CONFDIR/common.conf"\n'
                    'options {\n  pidfile = "$RUNDIR/rspamd.pid";\n'
                    '  .include "$CONFDIR/options.inc"\n'
                    '  dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }\n'
                    '}\n'
                    'logging { type = "file"; filename = "$LOGDIR/rspamd.log"; level = "info"; }\n'
                    'worker "rspamd_proxy" {\n  bind_socket = "127.0.0.1:%d";\n'
                    '  milter = yes;\n  timeout = 120s;\n  count = 1;\n'
                    '  upstream "local" { default = yes; self_scan = yes; }\n}\n' % port)
        # rspamd adds no header to a clean message unless asked to: the extended headers
        with open(os.path.join(d, "local", "local.d", "milter_headers.conf"), "w") as f:
            # (and not only for remote clients: ours is on loopback)
            f.write("extended_spam_headers = true;\nskip_local = false;\n"
                    "skip_authenticated = false;\n")
        argv = ["rspamd", "-f", "-i", "-c", conf]
        for var, sub in (("LOCAL_CONFDIR", "local"), ("DBDIR", "db"), ("RUNDIR", "run"),
                         ("LOGDIR", "log")):
            argv.append("--var=%s=%s" % (var, os.path.join(d, sub)))
        self.spawn(argv, port, t(120), os.path.join(d, "out.log"))
        return port

    def test_rspamd_rejects_gtube_and_marks_clean_mail(self):
        port = self.start_rspamd()
        sink = self.sink()
        d = self.daemon({"smtpd_milters": "inet:127.0.0.1:%d" % port,
                         "milter_content_timeout": "60s",
                         "smart_relay": "[127.0.0.1]:%d" % sink.port})
        clean = (b"From: Alice <a@src.test>\r\nTo: b@dst.test\r\nSubject: lunch\r\n"
                 b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <c1@src.test>\r\n\r\n"
                 b"Shall we meet for lunch at noon?\r\n")
        code, text = self.send(d, clean)
        self.assertEqual(code, 250, text)
        msg = sink.wait_messages(1, t(15))[0].data
        head = msg.split(b"\r\n\r\n", 1)[0]
        self.assertRegex(head, rb"(?m)^X-Spamd-Result: default: False \[")
        # rspamd names the message by our queue ID (the "i" macro)
        qid = mtatest.queue_id_of(mtatest.Reply(code, [text.decode()]))
        self.assertRegex(head, rb"(?m)^X-Rspamd-Queue-Id: " + qid.encode() + rb"\r?$")
        self.assertTrue(msg.endswith(b"Shall we meet for lunch at noon?\r\n"))
        spam = (b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: gtube\r\n"
                b"Message-ID: <gtube@src.test>\r\n\r\n" + GTUBE + b"\r\n")
        code, text = self.send(d, spam)
        self.assertEqual(code, 554, text)
        self.assertEqual(text, b"5.7.1 Gtube pattern")  # rspamd's own reply text
        d.wait_log(r"milter-reject: END-OF-MESSAGE from \S+: 554 5\.7\.1 Gtube pattern;")
        self.assertEqual(d.queued_ids(), set())


if __name__ == "__main__":
    mtatest.main()
