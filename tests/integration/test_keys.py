"""
test_keys.py - where the SSL key and certificate come from, and every start-up
error about them: missing/unreadable key volume, missing files, key and fs
terminal both set, a key that does not match the certificate, a
password-protected key, a world-readable key (refused), a group-readable key
(warning); keys read through a real nfs-ganesha export (NFSv4, libnfs) and an
unreachable export; certificate reload on SIGHUP without dropping a session.
Certificates are made here with the openssl CLI. Not here: TLS behaviour.
"""

import os
import signal
import smtplib
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import nfsserver  # noqa: E402
import tlskeys  # noqa: E402


def noverify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Keys(mtatest.MtaTestCase):
    def start_fails(self, settings, *expected):
        d = self.daemon(settings=settings, start=False)
        with self.assertRaises(mtatest.StartError):
            d.start(timeout=mtatest.t(20))
        self.assertNotEqual(d.proc.returncode, 0)
        lines = d.stderr().splitlines()
        for e in expected:
            self.assertIn(e, lines, d.stderr())
        return d.stderr()

    def keys(self, name="keys"):
        k = os.path.join(self.tmp, name)
        tlskeys.make_keys(k)
        return k

    def test_missing_key_volume(self):
        err = self.start_fails(tlskeys.tls_settings(os.path.join(self.tmp, "nope")),
                               "Error: Failed to mount key volume.")
        self.assertIn("nope", err)

    def test_missing_files(self):
        k = self.keys()
        os.unlink(os.path.join(k, "server.pem"))
        err = self.start_fails(tlskeys.tls_settings(k),
                               "Error: Could not find ssl keys on the key volume.")
        self.assertIn("server.pem", err)

    def test_empty_names_and_both_sources(self):
        k = self.keys()
        self.start_fails(tlskeys.tls_settings(k, ssl_key_file=""),
                         "Error: ssl_disabled=no but ssl key files are not defined.")
        self.start_fails(tlskeys.tls_settings(k, fs_terminal="nfs://127.0.0.1/export"),
                         "Error: Both the key volume and the 'fs' terminal are configured; use "
                         "only one of them.")

    def test_mismatch_password_and_permissions(self):
        a, b = self.keys("a"), self.keys("b")
        os.replace(os.path.join(b, "server.key"), os.path.join(a, "server.key"))
        self.start_fails(tlskeys.tls_settings(a),
                         "Error: The ssl key does not match the ssl certificate.")
        k = self.keys("pw")
        kf = os.path.join(k, "server.key")
        tlskeys.openssl("rsa", "-in", kf, "-aes256", "-passout", "pass:secret", "-out", kf + ".p")
        os.replace(kf + ".p", kf)
        os.chmod(kf, 0o600)
        self.start_fails(tlskeys.tls_settings(k), "Error: The ssl key is password-protected; "
                         "remove the password (openssl rsa -in protected.key -out server.key).")
        k = self.keys("perm")
        os.chmod(os.path.join(k, "server.key"), 0o644)
        err = self.start_fails(tlskeys.tls_settings(k), "Error: The ssl key file is readable by "
                               "other users; make it readable by its owner only (chmod 600).")
        self.assertIn("mode 0644", err)
        os.chmod(os.path.join(k, "server.key"), 0o640)
        d = self.daemon(settings=tlskeys.tls_settings(k))
        d.wait_log(r"warning: .*server\.key: mode 0640: the private key is readable by its group")

    def test_reload_on_sighup_keeps_sessions(self):
        k = self.keys()
        # a reload reads the files as mail_owner (docs/security.md): give them to it
        mtatest.give_to_mail_owner(k, *(os.path.join(k, f) for f in os.listdir(k)))
        d = self.daemon(settings=tlskeys.tls_settings(k))
        s = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=mtatest.t(10))
        s.ehlo("client.example")
        s.starttls(context=noverify())
        s.ehlo("client.example")
        first = s.sock.getpeercert(binary_form=True)
        tlskeys.make_keys(k, cn="rotated.example")
        os.kill(d.pid(), signal.SIGHUP)
        d.wait_log(r"TLS certificate reloaded")
        self.assertEqual(s.noop()[0], 250)  # the old session lives on
        s.quit()
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=mtatest.t(10)) as s2:
            s2.starttls(context=noverify())
            self.assertNotEqual(s2.sock.getpeercert(binary_form=True), first)
        os.unlink(os.path.join(k, "server.key"))
        os.kill(d.pid(), signal.SIGHUP)
        d.wait_log(r"warning: certificate reload failed, keeping the current one: ")
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=mtatest.t(10)) as s3:
            self.assertEqual(s3.starttls(context=noverify())[0], 220)

    @unittest.skipUnless(nfsserver.available(), "nfs-ganesha / libnfs-utils not installed")
    def test_keys_from_nfs(self):
        nfs = nfsserver.NfsServer(self.tmp)
        tlskeys.make_keys(os.path.join(nfs.export_dir, "ssl"))
        nfs.start()
        self.addCleanup(nfs.stop)
        s = tlskeys.tls_settings("", fs_terminal=nfs.url(), ssl_key_file="ssl/server.key",
                                 ssl_cert_file="ssl/server.pem")
        d = self.daemon(settings=s)
        with smtplib.SMTP_SSL("127.0.0.1", int(s["smtps_port"]), context=noverify(),
                              timeout=mtatest.t(10)) as c:
            self.assertEqual(c.ehlo("client.example")[0], 250)
        d.wait_log(r"Anonymous TLS connection established from unknown\[127\.0\.0\.1\]")
        s2 = dict(s, ssl_key_file="ssl/missing.key")
        err = self.start_fails(s2, "Error: Could not find ssl keys on the key volume.")
        self.assertIn("missing.key", err)
        nfs.stop()
        t0 = time.monotonic()
        err = self.start_fails(s, "Error: Failed to mount key volume.")
        self.assertIn("cannot mount " + nfs.url(), err)
        self.assertLess(time.monotonic() - t0, mtatest.t(15))


if __name__ == "__main__":
    mtatest.main()
