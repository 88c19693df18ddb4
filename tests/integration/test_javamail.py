"""
test_javamail.py - the appliance's first named user is a Tomcat web
application: mail sent through JavaMail itself (Debian's libmail-java on
default-jre-headless, JavaMailSend.java run with Java's single-file launcher).
Plain SMTP from a trusted address, SMTPS + AUTH and STARTTLS + AUTH from an
untrusted one, 50 sends each, every message delivered to a sink behind
smart_relay, every AUTH logged. The server certificate is trusted through a
truststore made with keytool (as a Tomcat administrator would), not by turning
verification off. STARTTLS + AUTH is issue 12 defect 1: JavaMail sends its EHLO
in the same write as its TLS Finished.
Not here: the byte-level STARTTLS race (test_starttls_race.py).
"""

import collections
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
import tlskeys  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
JARS = ["/usr/share/java/javax.mail.jar", "/usr/share/java/javax.activation.jar"]
SENDS = 50
SRC = "127.0.0.2"  # untrusted: relaying needs AUTH


def have_javamail():
    return shutil.which("java") and shutil.which("keytool") and all(map(os.path.exists, JARS))


@unittest.skipUnless(have_javamail(), "java, keytool or libmail-java not installed")
@unittest.skipUnless(shutil.which("saslpasswd2"), "sasl2-bin not installed")
class JavaMail(mtatest.MtaTestCase):
    def javamail(self, mode, port, tag, source=None, auth=False):
        """javamail - run JavaMailSend; returns its output (the test fails if a send failed)."""
        cmd = ["java", "-Djavax.net.ssl.trustStore=" + self.truststore,
               "-Djavax.net.ssl.trustStorePassword=changeit", "-Djavax.net.ssl.trustStoreType=PKCS12"]
        if source:
            cmd.append("-Dmta.localaddress=" + source)
        cmd += ["-cp", ":".join(JARS), os.path.join(HERE, "JavaMailSend.java"), mode,
                "127.0.0.1", str(port), str(SENDS), tag]
        if auth:
            cmd += [tlskeys.SASL_USER, tlskeys.SASL_PASS]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=mtatest.t(300))
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, "%s: %s" % (mode, out[-3000:]))
        self.assertIn("sent %d of %d" % (SENDS, SENDS), out)
        return out

    def test_plain_smtps_starttls_50_each(self):
        sink = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(sink.stop)
        keys = os.path.join(self.tmp, "keys")
        _key, cert = tlskeys.make_keys(keys)
        self.truststore = os.path.join(self.tmp, "trust.p12")
        subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "mta", "-file", cert,
                        "-keystore", self.truststore, "-storetype", "PKCS12", "-storepass",
                        "changeit"], check=True, capture_output=True, timeout=mtatest.t(60))
        s = tlskeys.tls_settings(keys, **tlskeys.make_sasl(os.path.join(self.tmp, "sasl")))
        s["smtpd_trusted_networks"] = "127.0.0.1/32"
        s["smart_relay"] = "[127.0.0.1]:%d" % sink.port
        d = self.daemon(settings=s)
        smtps = int(d.settings()["smtps_port"])

        failures = []
        for mode, port, source, auth in (("plain", d.smtp_port, None, False),
                                         ("smtps", smtps, SRC, True),
                                         ("starttls", d.smtp_port, SRC, True)):
            try:
                self.javamail(mode, port, "jm-" + mode, source, auth)
            except AssertionError as e:
                failures.append(str(e))
        self.assertEqual(failures, [])

        msgs = sink.wait_messages(3 * SENDS, mtatest.t(60))
        subjects = collections.Counter()
        for m in msgs:
            sm = re.search(rb"\r\nSubject: (jm-[a-z]+) (\d+)\r\n", m.data)
            self.assertIsNotNone(sm, m.data[:500])
            subjects[sm.group(1).decode()] += 1
            self.assertEqual(m.rcpts, ["rcpt@example.com"])
        self.assertEqual(subjects, {"jm-plain": SENDS, "jm-smtps": SENDS, "jm-starttls": SENDS})
        # every authenticated message came in over TLS with AUTH (ESMTPSA), none without
        esmtpsa = [m for m in msgs if re.search(rb"\(mta\) with ESMTPSA id ", m.data)]
        self.assertEqual(len(esmtpsa), 2 * SENDS)
        d.wait_log(r": client=unknown\[127\.0\.0\.2\], sasl_method=[A-Z]+, sasl_username=user$",
                   count=2 * SENDS)
        self.assertEqual(d.log_lines(r"Relay access denied"), [])


if __name__ == "__main__":
    mtatest.main()
