"""
test_dkim_sign.py - the built-in DKIM signer (docs/dkim.md) seen from outside: mail
from a trusted client relayed to a sink carries a DKIM-Signature that an independent
verifier (dkimpy, dkimverify.py) accepts with the public key published as a TXT record
through a private dnsmasq, for RSA 2048 and Ed25519; the same message with one body
byte changed fails (the verifier can fail); a From: domain outside dkim_domains is not
signed; a large (streamed) message verifies; a retry sends the signature made once at
intake; local mail (sendmail) is signed; a header too large to sign gets 451 4.7.5;
start-up errors name the setting; the counters reach /metrics and /api/stats.
Not here: the milter client (test_milter_*.py).
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsserver  # noqa: E402
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# folded fields, WSP runs and trailing WSP, a field twice, a tab-indented body, empty lines
# at the end of the body: what relaxed/relaxed must absorb (RFC 6376 3.4.2, 3.4.4)
AWKWARD = (b"From:  Alice   <a@src.test> \r\nTo: b@dst.test,\r\n\tc@dst.test\r\n"
           b"Subject:   spaced    out  \r\nSubject: twice\r\nCc:x@dst.test\r\n"
           b"X-Not-Signed: 1\r\n\r\n  leading  and trailing  \r\n\tmixed\t \t tabs\r\n"
           b"e\r\n\r\n\r\n")
VERIFIER_PY = "/usr/bin/python3"  # Debian's python3-dkim lives in its dist-packages
SIGNED_RE = r"\b%s: DKIM-Signature field added \(s=%s, d=%s\)$"


def have_dkimpy():
    return subprocess.run([VERIFIER_PY, "-c", "import dkim, dns.resolver"],
                          capture_output=True).returncode == 0


def make_key(directory, kind):
    """make_key - a private key file (0600) and the p= value of its DNS record."""
    path = os.path.join(directory, "dkim-%s.key" % kind)
    alg = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"] if kind == "rsa" else \
        ["-algorithm", "ED25519"]
    subprocess.run(["openssl", "genpkey"] + alg + ["-out", path], check=True,
                   capture_output=True)
    os.chmod(path, 0o600)
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    if kind == "ed25519":
        der = der[-32:]  # RFC 8463: the raw public key
    return path, base64.b64encode(der).decode()


def txt_record(name, kind, pub):
    """txt_record - dnsmasq's txt-record line, the key split into strings of <= 200 bytes."""
    text = "v=DKIM1; k=%s; p=%s" % (kind, pub)
    parts = [text[i:i + 200] for i in range(0, len(text), 200)]
    return "txt-record=%s,%s" % (name, ",".join('"%s"' % p for p in parts))


@unittest.skipUnless(dnsserver.available() and have_dkimpy(), "needs dnsmasq and python3-dkim")
class DkimSignTest(mtatest.MtaTestCase):

    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.keydir = tempfile.mkdtemp(prefix="mta-dkim-keys-")
        cls.rsa_key, cls.rsa_pub = make_key(cls.keydir, "rsa")
        cls.ed_key, cls.ed_pub = make_key(cls.keydir, "ed25519")

    @classmethod
    def tearDownClass(cls):
        import shutil
        shutil.rmtree(cls.keydir, ignore_errors=True)

    def setUp(self):
        super().setUp()
        dnsdir = os.path.join(self.tmp, "dns")
        os.makedirs(dnsdir, exist_ok=True)
        self.dns = dnsserver.DnsServer(dnsdir, [
            txt_record("rsa1._domainkey.src.test", "rsa", self.rsa_pub),
            txt_record("ed1._domainkey.src.test", "ed25519", self.ed_pub),
        ]).start()
        self.addCleanup(self.dns.stop)

    def sink(self, **kw):
        s = smtpsink.Sink("127.0.0.1", kw.pop("port", 0), **kw).start()
        self.addCleanup(s.stop)
        return s

    def signer(self, sink_port, selector="rsa1", key=None, env=None, **extra):
        st = {"smart_relay": "[127.0.0.1]:%d" % sink_port, "dkim_sign": "yes",
              "dkim_selector": selector, "dkim_domains": "src.test",
              "dkim_key_file": key or self.rsa_key}
        st.update(extra)
        return self.daemon(st, env=env)

    def send(self, d, sender, body, rcpts=("b@dst.test",)):
        s = d.smtp()
        try:
            s.ehlo("client.example")
            s.sendmail(sender, list(rcpts), body)
        finally:
            s.quit()

    def verify(self, msg):
        r = subprocess.run([VERIFIER_PY, os.path.join(HERE, "dkimverify.py"), str(self.dns.port)],
                           input=msg, capture_output=True, timeout=t(30))
        return r.returncode == 0, r.stdout.decode() + r.stderr.decode()[-2000:]

    def check_signed(self, d, sink, selector, alg, body):
        self.send(d, "a@src.test", body)
        msg = sink.wait_messages(1, t(10))[0].data
        self.assertTrue(msg.startswith(b"DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; "
                                       b"d=src.test;" % alg.encode()), msg[:300])
        self.assertIn(b" s=%s;" % selector.encode(), msg.split(b"\r\n\r\n")[0])
        ok, out = self.verify(msg)
        self.assertTrue(ok, out)
        # the verifier can fail: one byte of the body changed
        head, _, rest = msg.partition(b"\r\n\r\n")
        bad = head + b"\r\n\r\n" + rest.replace(b"e", b"E", 1)
        self.assertNotEqual(bad, msg)
        ok, out = self.verify(bad)
        self.assertFalse(ok, out)
        lines = d.wait_log(SIGNED_RE % ("[0-9A-F]+", selector, r"src\.test"), t(5))
        self.assertGreaterEqual(len(lines), 1, lines)
        return msg

    def test_rsa_signature_verifies_and_counts(self):
        sink = self.sink()
        d = self.signer(sink.port)
        body = (b"From: Alice <a@src.test>\r\nTo: b@dst.test\r\nSubject: signed\r\n\r\n"
                b"hello there\r\n.dot line\r\n")
        self.check_signed(d, sink, "rsa1", "rsa-sha256", body)
        self.send(d, "a@src.test", AWKWARD)  # what relaxed canonicalization must absorb
        msg = sink.wait_messages(2, t(10))[1].data
        ok, out = self.verify(msg)
        self.assertTrue(ok, out)
        # the counters: /metrics and /api/stats
        base = "http://127.0.0.1:%d" % d.ui_port
        metrics = urllib.request.urlopen(base + "/metrics", timeout=t(5)).read().decode()
        self.assertRegex(metrics, r"(?m)^mta_dkim_signed_total 2$")
        self.assertRegex(metrics, r"(?m)^mta_dkim_sign_failed_total 0$")
        stats = json.loads(urllib.request.urlopen(base + "/api/stats", timeout=t(5)).read())
        self.assertEqual((stats["dkim_signed"], stats["dkim_sign_failed"]), (2, 0))
        page = urllib.request.urlopen(base + "/", timeout=t(5)).read().decode()
        self.assertRegex(page, r"DKIM signed\D+2\b")

    def test_ed25519_signature_verifies(self):
        sink = self.sink()
        d = self.signer(sink.port, selector="ed1", key=self.ed_key)
        self.check_signed(d, sink, "ed1", "ed25519-sha256", AWKWARD)

    def test_large_streamed_message_verifies(self):
        sink = self.sink()
        d = self.signer(sink.port)
        line = b"0123456789abcdefghijklmnopqrstuvwxyz the quick brown fox jumps over\r\n"
        body = (b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: large\r\n\r\n" +
                line * 4000)  # ~280 KiB: streamed to the spool's body file
        msg = self.check_signed(d, sink, "rsa1", "rsa-sha256", body)
        self.assertGreater(len(msg), 256 * 1024)

    def test_signature_covers_the_milters_changes(self):
        import scriptmilter
        sink = self.sink()
        m = scriptmilter.ScriptMilter({"eom": [("chgheader", 1, "Subject", "changed by milter"),
                                               ("replbody", b"replaced body\r\n"),
                                               ("continue",)]}).start()
        self.addCleanup(m.stop)
        d = self.signer(sink.port, smtpd_milters=m.spec)
        self.send(d, "a@src.test", b"From: a@src.test\r\nSubject: original\r\n\r\nold body\r\n")
        msg = sink.wait_messages(1, t(10))[0].data
        self.assertIn(b"Subject: changed by milter\r\n", msg)
        self.assertTrue(msg.endswith(b"\r\n\r\nreplaced body\r\n"), msg[-100:])
        ok, out = self.verify(msg)  # signed after the milter: over the final message
        self.assertTrue(ok, out)

    def test_other_from_domain_not_signed(self):
        sink = self.sink()
        d = self.signer(sink.port)
        self.send(d, "x@other.test", b"From: x@other.test\r\nSubject: not ours\r\n\r\nbody\r\n")
        msg = sink.wait_messages(1, t(10))[0].data
        self.assertNotIn(b"DKIM-Signature:", msg)
        self.assertNotIn("DKIM-Signature field added", d.maillog())

    def test_retry_sends_the_signature_made_at_intake(self):
        port = mtatest.free_port()
        d = self.signer(port, minimal_backoff_time="1h", maximal_backoff_time="2h",
                        queue_run_delay="1h")
        body = b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: retry\r\n\r\nretried body\r\n"
        self.send(d, "a@src.test", body)
        d.wait_log(r"status=deferred", t(10))
        (qid,) = d.queued_ids()
        _, stored = d.spool_message(qid)
        self.assertTrue(stored.startswith(b"DKIM-Signature: "), stored[:200])
        sig = stored.split(b"\r\n\r\n")[0]
        sink = self.sink(port=port)
        r = subprocess.run([mtatest.MTACTL, "-c", d.config_path, "flush"], capture_output=True,
                           timeout=t(20))
        self.assertEqual(r.returncode, 0, r.stderr)
        msg = sink.wait_messages(1, t(15))[0].data
        self.assertEqual(msg.split(b"\r\n\r\n")[0], sig)
        ok, out = self.verify(msg)
        self.assertTrue(ok, out)
        self.assertEqual(len(d.log_lines(r"DKIM-Signature field added")), 1)

    def test_local_sendmail_mail_is_signed(self):
        sendmail = os.environ.get("SENDMAIL")
        if not sendmail or not os.path.exists(sendmail):
            self.skipTest("SENDMAIL not built")
        sink = self.sink()
        d = self.signer(sink.port)
        r = subprocess.run([sendmail, "-C", d.config_path, "-f", "a@src.test", "b@dst.test"],
                           input=b"From: a@src.test\nTo: b@dst.test\nSubject: local\n\nlocal body\n",
                           capture_output=True, timeout=t(20))
        self.assertEqual(r.returncode, 0, r.stderr)
        msg = sink.wait_messages(1, t(15))[0].data
        self.assertTrue(msg.startswith(b"DKIM-Signature: "), msg[:300])
        ok, out = self.verify(msg)
        self.assertTrue(ok, out)

    def test_signing_failure_gets_451_and_is_counted(self):
        sink = self.sink()
        # the test hook of docs/dkim.md: every signature fails as a broken key would
        d = self.signer(sink.port, env={"MTA_TEST_DKIM_FAIL": "1"})
        s = d.smtp()
        try:
            s.ehlo("client.example")
            s.mail("a@src.test")
            s.rcpt("b@dst.test")
            code, text = s.data(b"From: a@src.test\r\nSubject: fails\r\n\r\nbody\r\n")
            self.assertEqual((code, text), (451, b"4.7.5 Error: DKIM signing failed"))
            # the session goes on: a message from another domain is taken
            s.rset()
            s.mail("x@other.test")
            s.rcpt("b@dst.test")
            code, _ = s.data(b"From: x@other.test\r\nSubject: fine\r\n\r\nbody\r\n")
            self.assertEqual(code, 250)
        finally:
            s.close()
        d.wait_log(r"warning: [0-9A-F]+: DKIM signing failed \(s=rsa1, d=src\.test\): "
                   r"test hook", t(5))
        msgs = sink.wait_messages(1, t(10))
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"Subject: fine", msgs[0].data)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % d.ui_port,
                                         timeout=t(5)).read().decode()
        self.assertRegex(metrics, r"(?m)^mta_dkim_sign_failed_total 1$")

    @unittest.skipUnless(shutil.which("saslpasswd2"), "sasl2-bin not installed")
    def test_authenticated_client_signed_key_on_key_volume(self):
        import smtplib
        import ssl
        import tlskeys
        sink = self.sink()
        keys = os.path.join(self.tmp, "keys")
        tlskeys.make_keys(keys)
        shutil.copy(self.rsa_key, os.path.join(keys, "dkim.key"))  # read from key_volume
        os.chmod(os.path.join(keys, "dkim.key"), 0o600)
        st = tlskeys.tls_settings(keys, **tlskeys.make_sasl(os.path.join(self.tmp, "sasl")))
        st.update({"smtpd_trusted_networks": "127.0.0.1/32", "dkim_sign": "yes",
                   "dkim_selector": "rsa1", "dkim_domains": "src.test", "dkim_key_file": "dkim.key",
                   "smart_relay": "[127.0.0.1]:%d" % sink.port})
        d = self.daemon(st)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        body = b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: auth\r\n\r\nsubmitted\r\n"
        with smtplib.SMTP("127.0.0.1", d.smtp_port, source_address=("127.0.0.2", 0),
                          timeout=t(10)) as s:  # 127.0.0.2: not a trusted network
            s.ehlo("client.example")
            s.starttls(context=ctx)
            s.ehlo("client.example")
            s.mail("a@src.test")
            code, _ = s.rcpt("b@dst.test")
            self.assertEqual(code, 554)  # untrusted and not authenticated: nothing to sign
            s.rset()
            s.login(tlskeys.SASL_USER, tlskeys.SASL_PASS)
            self.assertEqual(s.sendmail("a@src.test", ["b@dst.test"], body), {})
        msg = sink.wait_messages(1, t(10))[0].data
        self.assertTrue(msg.startswith(b"DKIM-Signature: "), msg[:300])
        ok, out = self.verify(msg)
        self.assertTrue(ok, out)

    def test_startup_errors_name_the_setting(self):
        bad = os.path.join(self.tmp, "bad.key")
        with open(bad, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        os.chmod(bad, 0o600)
        for extra, want in (({"dkim_key_file": bad}, r"dkim_key_file %s: not a PEM" % bad),
                            ({"dkim_selector": ""}, r"dkim_selector is not set"),
                            ({"dkim_key_file": os.path.join(self.tmp, "none.key")},
                             r"dkim_key_file .*none\.key.*No such file")):
            st = {"dkim_sign": "yes", "dkim_selector": "rsa1", "dkim_key_file": self.rsa_key}
            st.update(extra)
            d = self.daemon(st, start=False)
            with self.assertRaises(mtatest.StartError):
                d.start(timeout=t(20))
            self.assertNotEqual(d.proc.returncode, 0)
            self.assertRegex(d.stderr(), want)


if __name__ == "__main__":
    mtatest.main()
