"""
test_config_errors.py - start-up refusals an administrator sees: the exact
appliance messages (appliance-spec.md), messages that name the setting, file and
line, `-o` overrides, and `mtactl check` (all errors, exit 2; exit 0 when good).
Every configuration refusal ends with mtad's summary line
`Error: Failed to pre-configure MTA.`; a start-up failure after the configuration
was read (a port in use, a data volume that is a file) ends with
`Error: Failed to start MTA server. See the appliance log for details.`
Not here: the behaviour of valid settings (the other test files).
"""

import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import t  # noqa: E402

PRECONFIGURE = "Error: Failed to pre-configure MTA."
START_FAILED = "Error: Failed to start MTA server. See the appliance log for details."


class ConfigErrors(mtatest.MtaTestCase):
    def write(self, text, name="main.cf"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def base(self, **extra):
        """base - a good configuration's lines (free ports, private data volume)."""
        lines = ["data_volume = %s" % os.path.join(self.tmp, "data"),
                 "in_address = 127.0.0.1",
                 "smtp_port = %d" % mtatest.free_port(),
                 "ui_port = %d" % mtatest.free_port(),
                 "maillog_file = %s" % os.path.join(self.tmp, "maillog")]
        lines += ["%s = %s" % kv for kv in extra.items()]
        return "\n".join(lines) + "\n"

    def run_mtad(self, cf, *overrides):
        """run_mtad - mtad must refuse to start: returns (exit status, stderr text)."""
        args = [mtatest.MTAD, "-c", cf]
        for o in overrides:
            args += ["-o", o]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.tmp)
        try:
            out, err = p.communicate(timeout=t(10))
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            self.fail("mtad started although the configuration is bad: %s %s" % (cf, overrides))
        return p.returncode, err.decode("utf-8", "replace")

    def assertLastLine(self, err, line):
        """assertLastLine - LINE is stderr's last line (the summary after the details)."""
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertTrue(lines, "stderr is empty")
        self.assertEqual(lines[-1], line, "stderr does not end with %r:\n%s" % (line, err))

    def assertRefused(self, cf, exact=None, contains=(), overrides=(), summary=PRECONFIGURE):
        rc, err = self.run_mtad(cf, *overrides)
        self.assertNotEqual(rc, 0, "mtad exited 0 on a bad configuration; stderr:\n" + err)
        if summary is not None:
            self.assertLastLine(err, summary)
        if exact is not None:
            self.assertIn(exact, err.splitlines(), "stderr lacks the exact line %r:\n%s" % (exact, err))
        for c in contains:
            if isinstance(c, re.Pattern):
                self.assertRegex(err, c)
            else:
                self.assertIn(c, err)
        return err

    def test_ui_port_out_of_range(self):
        for v in ("0", "70000", "abc", "-1", "65536", ""):
            with self.subTest(ui_port=v):
                cf = self.write(self.base() + "ui_port = %s\n" % v)
                self.assertRefused(cf, exact="Error: ui_port value must be between 1 and 65535.")

    def test_ui_port_override(self):
        cf = self.write(self.base())
        self.assertRefused(cf, exact="Error: ui_port value must be between 1 and 65535.",
                           overrides=["ui_port=70000"])

    def test_logs_enabled_without_log_terminal(self):
        cf = self.write(self.base(logs_enabled="yes", maillog_filename="maillog"))
        self.assertRefused(cf, exact="Error: Logs are enabled but 'log' terminal is not connected.")

    def test_key_volume_and_fs_terminal(self):
        os.mkdir(os.path.join(self.tmp, "keys"))
        cf = self.write(self.base(key_volume=os.path.join(self.tmp, "keys"),
                                  fs_terminal="nfs://127.0.0.1/export"))
        err = self.assertRefused(cf)
        self.assertRegex(err, r"(?m)^Error: ")
        self.assertRegex(err, r"key[_ ]volume")
        self.assertRegex(err, r"fs'?[_ ]terminal")

    def test_ssl_enabled_without_key_files(self):
        cf = self.write(self.base(ssl_disabled="no", ssl_key_file="", ssl_cert_file=""))
        self.assertRefused(cf, exact="Error: ssl_disabled=no but ssl key files are not defined.")
        cf = self.write(self.base(ssl_disabled="no") + "ssl_key_file =\n", name="key-only.cf")
        self.assertRefused(cf, exact="Error: ssl_disabled=no but ssl key files are not defined.")

    def test_unknown_setting_names_setting_file_and_line(self):
        text = self.base()
        line = text.count("\n") + 2
        cf = self.write(text + "# a comment\nbogus_setting = 1\n")
        self.assertRefused(cf, contains=["bogus_setting", re.compile(re.escape(cf) + r":%d\b" % line)])

    def test_unknown_override_named(self):
        cf = self.write(self.base())
        self.assertRefused(cf, contains=["no_such_knob"], overrides=["no_such_knob=3"])

    def test_bad_values_named(self):
        cases = [("message_size_limit", "lots"), ("smtpd_timeout", "5 fortnights"),
                 ("logs_enabled", "maybe"), ("smtpd_recipient_limit", "0"),
                 ("smtp_port", "99999")]
        for name, value in cases:
            with self.subTest(setting=name):
                text = self.base()
                line = text.count("\n") + 1
                cf = self.write(text + "%s = %s\n" % (name, value), name="%s.cf" % name)
                self.assertRefused(cf, contains=[name, re.compile(re.escape(cf) + r":%d\b" % line)])

    def test_missing_data_volume(self):
        text = "\n".join(l for l in self.base().splitlines() if not l.startswith("data_volume")) + "\n"
        cf = self.write(text)
        self.assertRefused(cf, contains=["data_volume"])

    def test_missing_config_file(self):
        rc, err = self.run_mtad(os.path.join(self.tmp, "nonexistent.cf"))
        self.assertNotEqual(rc, 0)
        self.assertIn("nonexistent.cf", err)
        self.assertLastLine(err, PRECONFIGURE)

    # --- start-up failures after a good configuration ---
    def test_smtp_port_in_use_fails_to_start(self):
        # a socket this test holds (bound and listening) has the port: mtad cannot bind it
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
            held.bind(("127.0.0.1", 0))
            held.listen(1)
            port = held.getsockname()[1]
            cf = self.write(self.base(smtp_port=str(port)))
            rc, err = self.run_mtad(cf)
        self.assertNotEqual(rc, 0, err)
        self.assertIn(START_FAILED, err.splitlines(), err)
        self.assertLastLine(err, START_FAILED)
        self.assertNotIn(PRECONFIGURE, err)

    def test_data_volume_is_a_regular_file_fails_to_start(self):
        path = os.path.join(self.tmp, "data")
        with open(path, "w") as f:
            f.write("not a directory\n")
        cf = self.write(self.base())
        rc, err = self.run_mtad(cf)
        self.assertNotEqual(rc, 0, err)
        self.assertIn(START_FAILED, err.splitlines(), err)
        self.assertLastLine(err, START_FAILED)
        self.assertNotIn(PRECONFIGURE, err)
        with open(path) as f:
            self.assertEqual(f.read(), "not a directory\n", "mtad changed the file")

    def test_later_lines_and_overrides_win(self):
        # A bad value overridden later in the file, and on the command line: mtad starts.
        d = mtatest.Daemon(self.tmp, settings={"message_size_limit": "20000"},
                           overrides=["smtpd_recipient_limit=2"])
        self.daemons.append(d)
        self.addCleanup(self._stop_daemon, d)
        d.start()
        with open(d.config_path) as f:
            text = f.read()
        # prepend a bad ui_port that a later line (the harness's) overrides
        with open(d.config_path, "w") as f:
            f.write("ui_port = 70000\nsmtpd_recipient_limit = 500\n" + text)
        d.stop()
        d.start()
        with d.client() as c:
            r = c.ehlo()
            self.assertIn("SIZE 20000", r.lines)
            c.cmd("MAIL FROM:<s@example.org>")
            self.assertReply(c.cmd("RCPT TO:<a@example.com>"), 250)
            self.assertReply(c.cmd("RCPT TO:<b@example.com>"), 250)
            self.assertReply(c.cmd("RCPT TO:<c@example.com>"), 452, "4.5.3 Error: too many recipients")

    # --- mtactl check ---
    def ctl_check(self, cf):
        if not os.path.exists(mtatest.MTACTL):
            self.skipTest("mtactl not built")
        p = subprocess.run([mtatest.MTACTL, "-c", cf, "check"], capture_output=True, timeout=t(20))
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")

    def test_mtactl_check_good(self):
        rc, out = self.ctl_check(self.write(self.base()))
        self.assertEqual(rc, 0, out)

    def test_mtactl_check_prints_all_errors(self):
        cf = self.write(self.base() + "ui_port = 0\nbogus_one = 1\nmessage_size_limit = huge\n"
                        "logs_enabled = yes\n")
        rc, out = self.ctl_check(cf)
        self.assertEqual(rc, 2, out)
        self.assertIn("Error: ui_port value must be between 1 and 65535.", out.splitlines())
        self.assertIn("bogus_one", out)
        self.assertIn("message_size_limit", out)
        self.assertIn("Error: Logs are enabled but 'log' terminal is not connected.", out.splitlines())


if __name__ == "__main__":
    mtatest.main()
