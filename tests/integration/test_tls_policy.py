"""
test_tls_policy.py - the outbound TLS policy against real servers on loopback:
smtp_tls_security_level encrypt/verify/secure/dane with Postfix's reasons,
DANE (RFC 7672) with TLSA records published by the test dnsmasq and the AD bit
set by dnssec_proxy.py (a validating resolver's stand-in), sinks (smtpsink.py)
whose certificates come from a test CA made here with the openssl CLI.
Each MX host has its own address in a 127.X.Y.0/24 this process claims
(mtatest.loopback_block), so parallel runs do not collide.
Not here: opportunistic STARTTLS with "may" (test_delivery_mx.py).
"""

import hashlib
import http.server
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsserver  # noqa: E402
import dnssec_proxy  # noqa: E402
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

HOSTS = range(10, 22)
BLOCK = mtatest.loopback_block(25, HOSTS)  # None: not root (skipped)
NET = BLOCK or "127.0.0."
(A_PLAIN, A_GOOD, A_WRONG, A_SELF, A_DANE, A_DANEBAD, A_DANETA, A_INSEC, A_SEC,
 A_SPARE, A_STS, A_HTTPS) = (NET + str(h) for h in HOSTS)


def at(addr):
    return re.escape("[%s]" % addr)


def openssl(*args, **kw):
    return subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, **kw).stdout


class TestCA:
    """A throw-away CA (EC P-256, fast to make) and leaf certificates it signs."""

    def __init__(self, d, name="ca"):
        self.dir = d
        self.key = os.path.join(d, name + ".key")
        self.cert = os.path.join(d, name + ".pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2",
                "-subj", "/CN=mta test CA " + name,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, stem, names):
        """issue - key, certificate chain (leaf then CA) for NAMES (subjectAltName)."""
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        crt = os.path.join(self.dir, stem + ".crt")
        chain = os.path.join(self.dir, stem + ".chain.pem")
        ext = os.path.join(self.dir, stem + ".ext")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=" + names[0])
        with open(ext, "w") as f:
            f.write("subjectAltName=" + ",".join("DNS:" + n for n in names) + "\n"
                    "extendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
        with open(chain, "w") as f, open(crt) as leaf, open(self.cert) as ca:
            f.write(leaf.read() + ca.read())
        return key, crt, chain


def spki_sha256(crt):
    """spki_sha256 - the TLSA 3 1 1 / 2 1 1 association data of certificate CRT (hex)."""
    pub = openssl("x509", "-in", crt, "-noout", "-pubkey")
    der = openssl("pkey", "-pubin", "-outform", "DER", input=pub)
    return hashlib.sha256(der).hexdigest()


def cert_sha256(crt):
    """cert_sha256 - the TLSA x 0 1 association data: SHA-256 of the whole certificate."""
    return hashlib.sha256(openssl("x509", "-in", crt, "-outform", "DER")).hexdigest()


class PolicyServer:
    """An HTTPS server (ssl module) at ADDR:PORT serving POLICY as
    /.well-known/mta-sts.txt with certificate CERT (key, crt, chain)."""

    def __init__(self, addr, port, cert, policy):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Host")))
                if self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                body = policy.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer((addr, port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert[2], cert[0])
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)


def policy(mode, mx, max_age=86400):
    return "version: STSv1\r\nmode: %s\r\n%smax_age: %d\r\n" % (
        mode, "".join("mx: %s\r\n" % m for m in mx), max_age)


class TlsPolicyTest(mtatest.MtaTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="mtatest-tlspki-")
        os.chmod(cls.pki, 0o755)  # mtad reads the CA file as mail_owner
        cls.ca = TestCA(cls.pki)
        cls.other_ca = TestCA(cls.pki, "other")
        cls.certs = {
            "good": cls.ca.issue("good", ["mx.good.test"]),
            "wrong": cls.ca.issue("wrong", ["mx.elsewhere.test"]),
            "sec": cls.ca.issue("sec", ["mx.sec.test"]),
            "dane": cls.other_ca.issue("dane", ["whatever.invalid"]),
            "daneta": cls.other_ca.issue("daneta", ["mx.daneta.test"]),
            "unrelated": cls.other_ca.issue("unrelated", ["mx.danebad.test"]),
            "sts": cls.ca.issue("sts", ["mx.sts.test"]),
            "stsweb": cls.ca.issue("stsweb", ["mta-sts.sts.test"]),
            "stsweb_bad": cls.other_ca.issue("stsweb_bad", ["mta-sts.sts.test"]),
        }

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, ignore_errors=True)

    def records(self):
        c = self.certs
        return [
            "mx-host=plain.test,mx.plain.test,10", "host-record=mx.plain.test,%s" % A_PLAIN,
            "mx-host=good.test,mx.good.test,10", "host-record=mx.good.test,%s" % A_GOOD,
            "mx-host=wrong.test,mx.wrong.test,10", "host-record=mx.wrong.test,%s" % A_WRONG,
            "mx-host=self.test,mx.self.test,10", "host-record=mx.self.test,%s" % A_SELF,
            "mx-host=sec.test,mx.sec.test,10", "host-record=mx.sec.test,%s" % A_SEC,
            # DANE-EE(3) SPKI SHA-256 of the sink's key: matches whatever the names say
            "mx-host=dane.test,mx.dane.test,10", "host-record=mx.dane.test,%s" % A_DANE,
            "dns-rr=_25._tcp.mx.dane.test,52,030101%s" % spki_sha256(c["dane"][1]),
            # a TLSA record for another key: the sink's certificate does not match
            "mx-host=danebad.test,mx.danebad.test,10",
            "host-record=mx.danebad.test,%s" % A_DANEBAD,
            "dns-rr=_25._tcp.mx.danebad.test,52,030101%s" % spki_sha256(c["dane"][1]),
            # DANE-TA(2): the issuing CA's certificate, the leaf must name the MX host
            "mx-host=daneta.test,mx.daneta.test,10",
            "host-record=mx.daneta.test,%s" % A_DANETA,
            "dns-rr=_25._tcp.mx.daneta.test,52,020001%s" % cert_sha256(self.other_ca.cert),
            # the same mismatching TLSA as danebad.test, but in a zone that is not signed
            "mx-host=insecure.test,mx.insecure.test,10",
            "host-record=mx.insecure.test,%s" % A_INSEC,
            "dns-rr=_25._tcp.mx.insecure.test,52,030101%s" % spki_sha256(c["dane"][1]),
            # a signed zone with only a PKIX-EE(1) record, which SMTP ignores (RFC 7672 3.1.3)
            "mx-host=daneunus.test,mx.daneunus.test,10",
            "host-record=mx.daneunus.test,%s" % A_PLAIN,
            "dns-rr=_25._tcp.mx.daneunus.test,52,010101%s" % spki_sha256(c["dane"][1]),
            # a signed zone whose TLSA lookup fails (forwarded to a dead server: SERVFAIL)
            "mx-host=daneerr.test,mx.daneerr.test,10",
            "host-record=mx.daneerr.test,%s" % A_SPARE,
            "server=/_25._tcp.mx.daneerr.test/127.0.0.1#9",
            # MTA-STS: the TXT record, the policy host and the MX
            "mx-host=sts.test,mx.sts.test,10", "host-record=mx.sts.test,%s" % A_STS,
            "txt-record=_mta-sts.sts.test,\"v=STSv1; id=20261203T1\"",
            "host-record=mta-sts.sts.test,%s" % A_HTTPS,
        ]

    def setUp(self):
        super().setUp()
        if not dnsserver.available():
            self.skipTest("dnsmasq is not installed")
        if BLOCK is None:
            self.skipTest("cannot bind port 25 on loopback (needs root)")
        self.dns = dnsserver.DnsServer(self.tmp, self.records()).start()
        self.addCleanup(self.dns.stop)
        self.proxy = dnssec_proxy.AdProxy(
            self.dns.port, ["dane.test", "danebad.test", "daneta.test", "good.test",
                            "daneerr.test", "daneunus.test"]).start()
        self.addCleanup(self.proxy.stop)

    def sink(self, addr, cert=None, **kw):
        s = smtpsink.Sink(addr, 25, **kw)
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert[2], cert[0])
            s.tls_ctx = ctx
        s.start()
        self.addCleanup(s.stop)
        return s

    def mtad(self, level, extra=None):
        s = {"dns_servers": self.proxy.server, "smart_relay": "", "minimal_backoff_time": "1h",
             "maximal_backoff_time": "1h", "queue_run_delay": "1h",
             "smtp_tls_security_level": level, "smtp_tls_CAfile": self.ca.cert}
        s.update(extra or {})
        return self.daemon(s)

    def send(self, d, rcpt):
        s = d.smtp()
        try:
            s.sendmail("s@sender.test", [rcpt], b"Subject: tls policy\r\n\r\nbody\r\n")
        finally:
            s.quit()

    def deferred(self, d, rcpt, host, addr, dsn, reason):
        d.wait_log(r"to=<%s>, relay=%s%s:25, .*dsn=%s, status=deferred \(%s\)$"
                   % (re.escape(rcpt), re.escape(host), at(addr), re.escape(dsn), reason), t(15))

    def sent(self, d, rcpt, host, addr):
        d.wait_log(r"to=<%s>, relay=%s%s:25, .*status=sent" % (re.escape(rcpt), re.escape(host),
                                                               at(addr)), t(15))

    # --- security levels ---

    def test_encrypt_defers_when_starttls_is_not_offered(self):
        plain = self.sink(A_PLAIN)
        d = self.mtad("encrypt")
        self.send(d, "u@plain.test")
        self.deferred(d, "u@plain.test", "mx.plain.test", A_PLAIN, "4.7.4",
                      r"TLS is required, but was not offered by host mx\.plain\.test"
                      + at(A_PLAIN))
        self.assertEqual(plain.messages, [])

    def test_encrypt_delivers_over_tls_without_verification(self):
        sink = self.sink(A_SELF, tls_dir=self.tmp)  # self-signed: not trusted, still fine
        d = self.mtad("encrypt")
        self.send(d, "u@self.test")
        self.sent(d, "u@self.test", "mx.self.test", A_SELF)
        self.assertTrue(sink.wait_messages(1)[0].tls)

    def test_verify_delivers_to_a_trusted_matching_certificate(self):
        sink = self.sink(A_GOOD, self.certs["good"])
        d = self.mtad("verify")
        self.send(d, "u@good.test")
        d.wait_log(r"Verified TLS connection established to mx\.good\.test" + at(A_GOOD)
                   + r":25: TLSv1\.[23] with cipher", t(15))
        self.sent(d, "u@good.test", "mx.good.test", A_GOOD)
        self.assertTrue(sink.wait_messages(1)[0].tls)

    def test_verify_defers_on_a_wrong_name(self):
        sink = self.sink(A_WRONG, self.certs["wrong"])
        d = self.mtad("verify")
        self.send(d, "u@wrong.test")
        self.deferred(d, "u@wrong.test", "mx.wrong.test", A_WRONG, "4.7.5",
                      "Server certificate not verified")
        d.wait_log(r"warning: server certificate verification failed for mx\.wrong\.test"
                   + at(A_WRONG) + r":25: num=62:hostname mismatch", t(5))
        self.assertEqual(sink.messages, [])

    def test_verify_defers_on_an_untrusted_certificate(self):
        sink = self.sink(A_SELF, tls_dir=self.tmp)
        d = self.mtad("verify")
        self.send(d, "u@self.test")
        self.deferred(d, "u@self.test", "mx.self.test", A_SELF, "4.7.5",
                      "Server certificate not verified")
        self.assertEqual(sink.messages, [])

    def test_secure_matches_the_nexthop_domain_and_its_subdomains(self):
        # mx.sec.test is inside sec.test (dot-nexthop); mx.good.test's name is not in wrong.test
        sec = self.sink(A_SEC, self.certs["sec"])
        d = self.mtad("secure")
        self.send(d, "u@sec.test")
        self.sent(d, "u@sec.test", "mx.sec.test", A_SEC)
        self.assertEqual(len(sec.wait_messages(1)), 1)
        wrong = self.sink(A_WRONG, self.certs["wrong"])
        self.send(d, "u@wrong.test")
        self.deferred(d, "u@wrong.test", "mx.wrong.test", A_WRONG, "4.7.5",
                      "Server certificate not verified")
        self.assertEqual(wrong.messages, [])

    # --- DANE ---

    def test_dane_ee_match_delivers(self):
        sink = self.sink(A_DANE, self.certs["dane"])
        d = self.mtad("dane", {"smtp_dns_support_level": "dnssec"})
        self.send(d, "u@dane.test")
        d.wait_log(r"Verified TLS connection established to mx\.dane\.test" + at(A_DANE), t(15))
        self.sent(d, "u@dane.test", "mx.dane.test", A_DANE)
        self.assertTrue(sink.wait_messages(1)[0].tls)

    def test_dane_ta_match_delivers(self):
        sink = self.sink(A_DANETA, self.certs["daneta"])
        d = self.mtad("dane", {"smtp_dns_support_level": "dnssec"})
        self.send(d, "u@daneta.test")
        d.wait_log(r"Verified TLS connection established to mx\.daneta\.test" + at(A_DANETA),
                   t(15))
        self.sent(d, "u@daneta.test", "mx.daneta.test", A_DANETA)
        self.assertEqual(len(sink.wait_messages(1)), 1)

    def test_dane_tlsa_mismatch_defers(self):
        sink = self.sink(A_DANEBAD, self.certs["unrelated"])
        d = self.mtad("dane", {"smtp_dns_support_level": "dnssec"})
        self.send(d, "u@danebad.test")
        self.deferred(d, "u@danebad.test", "mx.danebad.test", A_DANEBAD, "4.7.5",
                      "Server certificate not verified")
        d.wait_log(r"warning: server certificate verification failed for mx\.danebad\.test"
                   + at(A_DANEBAD) + r":25: num=65:no matching DANE TLSA records", t(5))
        self.assertEqual(sink.messages, [])

    def test_dane_unusable_tlsa_records_still_require_tls(self):
        # secure TLSA records, none usable: TLS without authentication (RFC 7672 2.2)
        plain = self.sink(A_PLAIN)
        d = self.mtad("dane", {"smtp_dns_support_level": "dnssec"})
        self.send(d, "u@daneunus.test")
        self.deferred(d, "u@daneunus.test", "mx.daneunus.test", A_PLAIN, "4.7.4",
                      r"TLS is required, but was not offered by host mx\.daneunus\.test"
                      + at(A_PLAIN))
        self.assertEqual(plain.messages, [])

    def test_dane_tlsa_lookup_failure_defers(self):
        # RFC 7672 2.2.1: an indeterminate TLSA answer must not fall back to plaintext
        sink = self.sink(A_SPARE)
        d = self.mtad("dane", {"smtp_dns_support_level": "dnssec"})
        self.send(d, "u@daneerr.test")
        d.wait_log(r"to=<u@daneerr\.test>, relay=none, .*dsn=4\.7\.5, status=deferred \(TLSA "
                   r"lookup error for mx\.daneerr\.test:25: Host not found, try again\)$",
                   t(20))
        self.assertEqual(sink.sessions, 0)

    def test_dane_without_ad_bit_is_may(self):
        # the zone is not signed (no AD): its TLSA records are ignored, as is a resolver
        # whose AD bit smtp_dns_support_level does not trust
        sink = self.sink(A_INSEC, self.certs["unrelated"])
        d = self.mtad("dane", {"smtp_dns_support_level": "dnssec"})
        self.send(d, "u@insecure.test")
        self.sent(d, "u@insecure.test", "mx.insecure.test", A_INSEC)
        self.assertEqual(len(sink.wait_messages(1)), 1)
        bad = self.sink(A_DANEBAD, self.certs["unrelated"])
        d2 = self.mtad("dane", {"smtp_dns_support_level": "enabled"})
        self.send(d2, "v@danebad.test")
        self.sent(d2, "v@danebad.test", "mx.danebad.test", A_DANEBAD)
        self.assertEqual(len(bad.wait_messages(1)), 1)

    # --- MTA-STS ---

    def sts(self, mode, mx, web="stsweb", extra=None):
        """sts - a policy server for sts.test and an mtad with smtp_mta_sts = yes."""
        port = mtatest.free_port(A_HTTPS)
        srv = PolicyServer(A_HTTPS, port, self.certs[web], policy(mode, mx))
        self.addCleanup(srv.stop)
        s = {"smtp_mta_sts": "yes", "smtp_mta_sts_port": str(port)}
        s.update(extra or {})
        return srv, self.mtad("may", s)

    def test_sts_valid_policy_delivers_verified_and_is_cached(self):
        sink = self.sink(A_STS, self.certs["sts"])
        srv, d = self.sts("enforce", ["mx.sts.test"])
        self.send(d, "u@sts.test")
        d.wait_log(r"MTA-STS policy for sts\.test: mode enforce, 1 mx pattern\(s\), "
                   r"max_age 86400$", t(15))
        d.wait_log(r"Verified TLS connection established to mx\.sts\.test" + at(A_STS), t(15))
        self.sent(d, "u@sts.test", "mx.sts.test", A_STS)
        self.assertTrue(sink.wait_messages(1)[0].tls)
        self.assertEqual(srv.requests, [("/.well-known/mta-sts.txt", "mta-sts.sts.test")])
        cache = os.path.join(d.data_volume, "mta-sts", "sts.test")
        deadline = time.monotonic() + t(5)
        while not os.path.exists(cache) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(cache), "policy not cached on the data volume")
        # the same id in DNS: the next delivery uses the cached policy, no new fetch
        self.send(d, "v@sts.test")
        self.sent(d, "v@sts.test", "mx.sts.test", A_STS)
        self.assertEqual(len(srv.requests), 1)

    def test_sts_cached_policy_survives_a_restart(self):
        # the policy host goes away; after a restart the copy on the data volume still
        # holds (same id in DNS, max_age not over): an MX it does not list is refused
        sink = self.sink(A_STS, self.certs["sts"])
        srv, d = self.sts("enforce", ["*.elsewhere.test"])
        self.send(d, "u@sts.test")
        d.wait_log(r"to=<u@sts\.test>, relay=none, .*status=deferred \(MTA-STS policy", t(15))
        self.assertEqual(d.stop(), 0)
        srv.stop()
        self.assertTrue(os.path.exists(os.path.join(d.data_volume, "mta-sts", "sts.test")))
        d.start()
        self.send(d, "v@sts.test")
        d.wait_log(r"to=<v@sts\.test>, relay=none, .*dsn=4\.7\.5, status=deferred \(MTA-STS "
                   r"policy for sts\.test does not list MX host mx\.sts\.test\)$", t(15))
        self.assertEqual(d.log_lines(r"sts-policy-fetch-error"), [])
        self.assertEqual(sink.sessions, 0)

    def test_sts_enforce_defers_an_mx_not_in_the_policy(self):
        sink = self.sink(A_STS, self.certs["sts"])
        _, d = self.sts("enforce", ["*.elsewhere.test"])
        self.send(d, "u@sts.test")
        # no connection is made to an MX host the policy does not list
        d.wait_log(r"to=<u@sts\.test>, relay=none, .*dsn=4\.7\.5, status=deferred \(MTA-STS "
                   r"policy for sts\.test does not list MX host mx\.sts\.test\)$", t(15))
        self.assertEqual(sink.sessions, 0)
        d.wait_log(r"tlsrpt: policy-domain=sts\.test policy-type=sts "
                   r"result-type=validation-failure receiving-mx-hostname=mx\.sts\.test", t(5))
        self.assertEqual(sink.messages, [])

    def test_sts_enforce_defers_an_unverified_mx_certificate(self):
        sink = self.sink(A_STS, tls_dir=self.tmp)  # self-signed
        _, d = self.sts("enforce", ["mx.sts.test"])
        self.send(d, "u@sts.test")
        self.deferred(d, "u@sts.test", "mx.sts.test", A_STS, "4.7.5",
                      "Server certificate not verified")
        d.wait_log(r"tlsrpt: policy-domain=sts\.test policy-type=sts "
                   r"result-type=certificate-not-trusted", t(5))
        self.assertEqual(sink.messages, [])

    def test_sts_testing_mode_logs_but_delivers(self):
        sink = self.sink(A_STS, tls_dir=self.tmp)  # self-signed, and not in the policy
        _, d = self.sts("testing", ["*.elsewhere.test"])
        self.send(d, "u@sts.test")
        d.wait_log(r"MTA-STS policy for sts\.test does not list MX host mx\.sts\.test "
                   r"\(mode testing\): delivering anyway$", t(15))
        self.sent(d, "u@sts.test", "mx.sts.test", A_STS)
        self.assertEqual(len(sink.wait_messages(1)), 1)

    def test_sts_policy_host_with_a_bad_certificate_is_no_policy(self):
        # RFC 8461 3.3: a policy from a host whose certificate does not verify is not used
        sink = self.sink(A_STS, tls_dir=self.tmp)
        srv, d = self.sts("enforce", ["*.elsewhere.test"], web="stsweb_bad")
        self.send(d, "u@sts.test")
        d.wait_log(r"tlsrpt: policy-domain=sts\.test policy-type=sts "
                   r"result-type=sts-webpki-invalid", t(15))
        self.sent(d, "u@sts.test", "mx.sts.test", A_STS)
        self.assertEqual(len(sink.wait_messages(1)), 1)
        self.assertEqual(srv.requests, [])


if __name__ == "__main__":
    mtatest.main()
