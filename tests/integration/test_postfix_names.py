"""
test_postfix_names.py - an administrator's Postfix main.cf lines start mtad: the
daemon is configured only by Postfix's names (myhostname, mynetworks, relayhost with
a $name reference, inet_interfaces = loopback-only, queue_directory, TLS files by
absolute path) and relays a message to a sink; a Postfix value mta cannot mean the
same way stops the start with an error that names the setting; mtad and mtactl
without -c read the installed default file and name it when it is missing.
Not here: the value mapping rule by rule (tests/unit/test_conf.c, tests/golden/conf).
"""

import os
import re
import smtplib
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
import tlskeys  # noqa: E402
from mtatest import t  # noqa: E402

# mtatest's settings under our names, replaced here by Postfix's
OURS = ("hostname", "data_volume", "in_address", "smtpd_trusted_networks", "smart_relay")


class PostfixNamesTest(mtatest.MtaTestCase):

    def postfix_daemon(self, main_cf, start=True):
        """postfix_daemon - mtad whose config has MAIN_CF's Postfix lines in place of
        the harness's own names (the harness still sets ports and the maillog)."""
        d = self.daemon(start=False)
        settings = {k: None for k in OURS}
        settings.update(main_cf(d))
        d.user_settings = settings
        if start:
            d.start()
        return d

    def test_main_cf_relays_mail(self):
        sink = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(sink.stop)
        keys = os.path.join(self.tmp, "keys")
        key, cert = tlskeys.make_keys(keys)
        mtatest.give_to_mail_owner(keys, key, cert)
        d = self.postfix_daemon(lambda d: {
            "myhostname": mtatest.HOSTNAME,
            "mynetworks": "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128",
            "relayhost": "[127.0.0.1]:%d" % sink.port,
            "inet_interfaces": "loopback-only",
            "queue_directory": d.data_volume,
            "smtpd_tls_cert_file": cert,
            "smtpd_tls_key_file": key,
            "smtpd_tls_security_level": "may",
            "smtps_port": str(mtatest.free_port()),
        })
        with open(d.config_path) as f:
            cf = f.read()
        for ours in OURS:
            self.assertNotRegex(cf, r"(?m)^%s\s*=" % ours)

        res = subprocess.run([mtatest.MTACTL, "-c", d.config_path, "check"],
                             capture_output=True, text=True, timeout=t(30))
        self.assertEqual(res.returncode, 0, res.stderr)
        for pf, ours in (("myhostname", "hostname"), ("mynetworks", "smtpd_trusted_networks"),
                         ("relayhost", "smart_relay"), ("inet_interfaces", "in_address"),
                         ("queue_directory", "data_volume"),
                         ("smtpd_tls_security_level", "ssl_disabled")):
            self.assertIn("mtactl: %s is read as %s\n" % (pf, ours), res.stdout)

        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=t(10)) as s:
            code, banner = s.ehlo("client.example")
            self.assertEqual(code, 250)
            self.assertTrue(banner.startswith(mtatest.HOSTNAME.encode()), banner)
            self.assertTrue(s.has_extn("starttls"), banner)
            s.starttls(context=ssl._create_unverified_context())
            s.sendmail("sender@client.example", ["rcpt@remote.example"],
                       b"Subject: postfix names\r\n\r\nrelayed by main.cf names\r\n")
        msgs = sink.wait_messages(1, timeout=t(15))
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"relayed by main.cf names", msgs[0].data)
        d.wait_log(r"to=<rcpt@remote\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*"
                   r"status=sent" % sink.port, timeout=t(10))
        self.assertTrue(os.path.isdir(os.path.join(d.data_volume)))  # queue_directory used

    def test_postfix_value_mta_cannot_mean_stops_start(self):
        d = self.postfix_daemon(lambda d: {
            "queue_directory": d.data_volume,
            "inet_interfaces": "127.0.0.1, [::1]",
        }, start=False)
        with self.assertRaises(mtatest.StartError):
            d.start(timeout=t(10))
        self.assertRegex(d.stderr(), r"Error: [^\n]*: bad value '127\.0\.0\.1, \[::1\]' for "
                                     r"inet_interfaces \(mta's in_address\): mta listens on "
                                     r"one address or all, not a list\n")

    def default_path(self, prog, pattern):
        """default_path - the installed configuration file PROG names in its usage."""
        res = subprocess.run([prog, "-h"], capture_output=True, text=True, timeout=t(10))
        m = re.search(pattern, res.stdout + res.stderr)
        self.assertIsNotNone(m, "no default file in the usage of %s:\n%s%s"
                             % (prog, res.stdout, res.stderr))
        path = m.group(1)
        if os.path.exists(path):
            self.skipTest("%s exists on this host: its missing-file error cannot be shown"
                          % path)
        return path

    def test_without_c_reads_the_installed_default(self):
        path = self.default_path(mtatest.MTAD, r"\(FILE: (/\S+)\)")
        res = subprocess.run([mtatest.MTAD], capture_output=True, text=True, timeout=t(30),
                             cwd=self.tmp)
        self.assertEqual(res.returncode, 1, res.stderr)
        self.assertIn("Error: cannot read %s: No such file or directory\n" % path, res.stderr)
        self.assertIn("Error: Failed to pre-configure MTA.\n", res.stderr)
        self.assertNotIn("usage", res.stderr)

        path = self.default_path(mtatest.MTACTL, r"\(default (/\S+)\)")
        res = subprocess.run([mtatest.MTACTL, "check"], capture_output=True, text=True,
                             timeout=t(30), cwd=self.tmp)
        self.assertEqual(res.returncode, 2, res.stderr)
        self.assertEqual(res.stderr, "Error: cannot read %s: No such file or directory\n" % path)


if __name__ == "__main__":
    mtatest.main()
