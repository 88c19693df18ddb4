"""
test_package.py - the install step and the Debian package (cmake/install.cmake):
`cmake --install` of this build into a DESTDIR puts the programs, the configuration,
the systemd unit, the man pages and the logrotate file in their FHS places, with paths
inside them that match the prefix; the installed mtad with the installed configuration
(paths and ports moved by -o) accepts a message; logrotate with the installed file
rotates a live daemon's maillog_file and mtad writes on in the new file after SIGHUP
as mail_owner; a packager's build (-DCMAKE_INSTALL_PREFIX=/usr -DBUILD_TESTING=OFF) in
a temp directory gives a .deb (cpack -G DEB) whose control data and contents
dpkg-deb shows as intended, and cpack refuses a .deb of a /usr/local build.
The .deb's programs, unpacked into a scratch root (dpkg-deb -x), send one mail through its
sendmail to its mtad; the installed tree does the same (and shows pickup's uid= line).
Not here: installing the .deb on Debian 12 with its maintainer scripts (needs a base system:
scripts/fresh-debian-check.sh with FRESH_DEB=1, which also sends through sendmail as nobody).
"""

import glob
import gzip
import os
import pwd
import re
import shutil
import signal
import smtplib
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

BUILD = os.path.dirname(os.path.abspath(mtatest.MTAD))


def cache_value(build, name):
    """cache_value - NAME's value in BUILD's CMakeCache.txt (None when absent)."""
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        for line in f:
            m = re.match(r"%s:[A-Z]+=(.*)$" % re.escape(name), line.rstrip("\n"))
            if m:
                return m.group(1)
    return None


def fhs_dirs(prefix):
    """fhs_dirs - GNUInstallDirs' full sysconfdir and localstatedir for PREFIX (/usr:
    /etc and /var; otherwise under the prefix)."""
    if prefix.rstrip("/") == "/usr":
        return "/etc", "/var"
    return prefix + "/etc", prefix + "/var"


def settings_names():
    """settings_names - every setting `mtactl settings` lists."""
    out = subprocess.run([mtatest.MTACTL, "settings"], capture_output=True, text=True,
                         check=True, timeout=t(30)).stdout
    return re.findall(r"^\| `([a-z0-9_]+)` \|", out, re.M)


def run(cmd, timeout, **kw):
    """run - CMD at low priority (it builds); its output in the failure message."""
    p = subprocess.run(["nice", "-n", "10"] + cmd, capture_output=True, text=True,
                       timeout=timeout, **kw)
    if p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (" ".join(cmd), p.returncode,
                                                       p.stdout[-3000:], p.stderr[-3000:]))
    return p.stdout


class Install(mtatest.MtaTestCase):

    def setUp(self):
        super().setUp()
        if not os.path.exists(os.path.join(BUILD, "cmake_install.cmake")):
            self.skipTest("%s is not a CMake build directory" % BUILD)
        self.prefix = cache_value(BUILD, "CMAKE_INSTALL_PREFIX")
        self.etc, self.var = fhs_dirs(self.prefix)
        # the configuration where the programs look without -c (default /etc/mta)
        self.confdir = cache_value(BUILD, "MTA_SYSCONFDIR") or "/etc/mta"
        self.dest = os.path.join(self.tmp, "dest")
        env = dict(os.environ, DESTDIR=self.dest)
        run(["cmake", "--install", BUILD], t(120), env=env)

    def path(self, p):
        """path - the installed file P (an absolute target path) inside the DESTDIR."""
        return self.dest + p

    def test_files_in_fhs_places(self):
        p = self.prefix
        for prog in ("mtad", "mtactl", "sendmail", "postdrop", "postqueue", "postsuper"):
            f = self.path("%s/sbin/%s" % (p, prog))
            self.assertTrue(os.access(f, os.X_OK), f)
        # mailq and newaliases in bin (as Debian's postfix), /usr/lib/sendmail for old scripts
        for link in ("bin/mailq", "bin/newaliases", "lib/sendmail"):
            f = self.path("%s/%s" % (p, link))
            self.assertTrue(os.path.islink(f), f)
            self.assertFalse(os.path.isabs(os.readlink(f)), f)
            self.assertEqual(os.path.realpath(f), os.path.realpath(self.path(p + "/sbin/sendmail")))
        out = subprocess.run([self.path(p + "/sbin/mtad"), "-V"], capture_output=True,
                             text=True, timeout=t(10)).stdout
        self.assertRegex(out, r"^mtad \d+\.\d+\.\d+\n$")

        conf = self.path(self.confdir + "/mtad.conf")
        self.assertEqual(stat.S_IMODE(os.stat(conf).st_mode), 0o640, "may hold the UI password")
        with open(conf) as f:
            text = f.read()
        spool, logdir = self.var + "/spool/mta", self.var + "/log/mta"
        self.assertRegex(text, r"(?m)^data_volume = %s$" % re.escape(spool))
        self.assertRegex(text, r"(?m)^maillog_file = %s/maillog$" % re.escape(logdir))
        self.assertRegex(text, r"(?m)^in_address = 127\.0\.0\.1$")
        p_check = subprocess.run([mtatest.MTACTL, "-c", conf, "check"], capture_output=True,
                                 text=True, timeout=t(30))
        self.assertEqual(p_check.returncode, 0, p_check.stderr)

        unit = self.path(p + "/lib/systemd/system/mtad.service")
        with open(unit) as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^ExecStart=%s/sbin/mtad -c %s/mtad\.conf$"
                         % (re.escape(p), re.escape(self.confdir)))
        self.assertRegex(text, r"(?m)^ReadWritePaths=%s$" % re.escape(spool))
        if logdir == "/var/log/mta":
            self.assertRegex(text, r"(?m)^LogsDirectory=mta$")
        else:
            self.assertRegex(text, r"(?m)^ReadWritePaths=-%s$" % re.escape(logdir))

        with open(self.path(self.etc + "/logrotate.d/mta")) as f:
            text = f.read()
        self.assertIn("%s/maillog {" % logdir, text)
        self.assertRegex(text, r"(?m)^\s+create 0640 mta adm$")
        self.assertIn("systemctl reload mtad.service", text)

        pages = {}
        for page in ("man8/mtad.8", "man8/mtactl.8", "man5/mtad.conf.5", "man1/sendmail.1"):
            found = glob.glob(self.path("%s/share/man/%s*" % (p, page)))
            self.assertEqual(len(found), 1, page)
            with open(found[0], "rb") as f:
                raw = f.read()
            pages[page] = (gzip.decompress(raw) if found[0].endswith(".gz") else raw).decode()
            self.assertNotIn("@", pages[page].replace("@localhost", ""), page + ": unfilled")
            if shutil.which("man"):
                r = subprocess.run(["man", "--warnings=all", "-l", found[0]], capture_output=True,
                                   text=True, timeout=t(30),
                                   env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"))
                self.assertEqual((r.returncode, r.stderr), (0, ""), page)
        # mtad.conf(5) lists exactly the settings the program has
        section = pages["man5/mtad.conf.5"].split("\n.SH SETTINGS\n")[1].split("\n.SH ")[0]
        listed = re.findall(r"(?m)^\.TP\n\.B ([a-z0-9_]+)$", section)
        self.assertEqual(listed, settings_names())
        self.assertIn(self.confdir + "/mtad.conf", pages["man8/mtad.8"])
        self.assertTrue(os.path.exists(self.path(p + "/share/doc/mta/README.md")))

    def test_installed_daemon_accepts_mail(self):
        """The installed program with the installed configuration: only what a test
        cannot use (the system's paths, port 25, 8025) moved with -o."""
        conf = self.path(self.confdir + "/mtad.conf")
        d = mtatest.Daemon(self.tmp, name="installed")
        self.addCleanup(d._hold_sock.close)
        d.smtp_port, d.ui_port = mtatest.free_port(), mtatest.free_port()
        argv = [self.path(self.prefix + "/sbin/mtad"), "-c", conf,
                "-o", "data_volume=" + d.data_volume, "-o", "maillog_file=" + d.maillog_path,
                "-o", "smtp_port=%d" % d.smtp_port, "-o", "ui_port=%d" % d.ui_port,
                "-o", "smart_relay=[127.0.0.1]:%d" % d.hold_port]
        if os.geteuid() != 0:
            argv += ["-o", "mail_owner=" + pwd.getpwuid(os.geteuid()).pw_name]
        err = open(os.path.join(self.tmp, "installed.stderr"), "wb")
        self.addCleanup(err.close)
        proc = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        deadline = time.monotonic() + t(10)
        while True:
            try:
                s = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=t(10))
                break
            except OSError:
                self.assertIsNone(proc.poll(), "installed mtad exited")
                self.assertLess(time.monotonic(), deadline, "no SMTP greeting")
                time.sleep(0.1)
        with s:
            s.sendmail("a@example.com", ["b@example.net"], b"Subject: installed\r\n\r\nhi\r\n")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(t(30)), 0)
        with open(d.maillog_path) as f:
            self.assertRegex(f.read(), r"from=<a@example\.com>, size=\d+, nrcpt=1")

    def test_installed_sendmail_submits_to_installed_daemon(self):
        """The installed sendmail finds the installed postdrop next to it (command_directory
        empty) and the installed mtad delivers what it submitted, as PHP's mail() runs it."""
        sink = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(sink.stop)
        d = mtatest.Daemon(self.tmp, name="installed")
        self.addCleanup(d._hold_sock.close)
        d.smtp_port, d.ui_port = mtatest.free_port(), mtatest.free_port()
        # the installed configuration, with what a test cannot use moved by later lines
        conf = os.path.join(self.tmp, "installed.cf")
        with open(self.path(self.confdir + "/mtad.conf")) as f:
            text = f.read()
        text += ("\ndata_volume = %s\nmaillog_file = %s\nsmtp_port = %d\nui_port = %d\n"
                 "smart_relay = [127.0.0.1]:%d\nhostname = %s\n"
                 % (d.data_volume, d.maillog_path, d.smtp_port, d.ui_port, sink.port,
                    mtatest.HOSTNAME))
        if os.geteuid() != 0:
            text += "mail_owner = %s\n" % pwd.getpwuid(os.geteuid()).pw_name
        with open(conf, "w") as f:
            f.write(text)
        err = open(os.path.join(self.tmp, "installed.stderr"), "wb")
        self.addCleanup(err.close)
        proc = subprocess.Popen([self.path(self.prefix + "/sbin/mtad"), "-c", conf], stderr=err,
                                stdout=subprocess.DEVNULL)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        deadline = time.monotonic() + t(10)
        while not os.path.isdir(os.path.join(d.data_volume, "maildrop")):
            self.assertIsNone(proc.poll(), "installed mtad exited")
            self.assertLess(time.monotonic(), deadline, "no maildrop")
            time.sleep(0.1)
        r = subprocess.run([self.path(self.prefix + "/sbin/sendmail"), "-C", conf, "-t", "-i"],
                           input=b"To: pkg@dst.test\nSubject: installed sendmail\n\nhi\n",
                           capture_output=True, timeout=t(30))
        self.assertEqual((r.returncode, r.stderr), (0, b""))
        r = subprocess.run([self.path(self.prefix + "/bin/newaliases")], capture_output=True,
                           timeout=t(30))
        self.assertEqual((r.returncode, r.stderr), (0, b""))
        msgs = sink.wait_messages(1, t(15))
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0].rcpts, ["pkg@dst.test"])
        self.assertIn(b"Subject: installed sendmail\r\n", msgs[0].data)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(t(30)), 0)
        with open(d.maillog_path) as f:
            self.assertRegex(f.read(), r"(?m)/pickup\[\d+\]: [0-9A-F]+: uid=%d from=<"
                             % os.getuid())

    @unittest.skipUnless(shutil.which("logrotate"), "logrotate missing")
    def test_logrotate_file_rotates_live_maillog(self):
        """The installed logrotate stanza (path and postrotate pointed at this test's
        daemon) against mtad running as mail_owner: the new file is mta's, and mtad
        writes there after its SIGHUP reopen."""
        if os.geteuid() != 0:
            self.skipTest("logrotate's create mta adm needs root")
        logdir = os.path.join(self.tmp, "log")
        os.mkdir(logdir, 0o755)  # logrotate refuses a group/world-writable directory
        maillog = os.path.join(logdir, "maillog")
        d = self.daemon(start=False)
        d.maillog_path = maillog
        d.start()
        with open(self.path(self.etc + "/logrotate.d/mta")) as f:
            text = f.read()
        text = text.replace(self.var + "/log/mta/maillog", maillog)
        text = re.sub(r"(?s)postrotate\n.*?endscript",
                      "postrotate\n\t\tkill -HUP %d\n\tendscript" % d.pid(), text)
        conf = os.path.join(self.tmp, "logrotate.conf")
        with open(conf, "w") as f:
            f.write(text)
        r = subprocess.run(["logrotate", "-f", "-s", os.path.join(self.tmp, "state"), conf],
                           capture_output=True, text=True, timeout=t(30))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        d.wait_log(r"reload -- version")
        with d.smtp() as s:
            s.sendmail("rot@example.com", ["b@example.net"], b"Subject: r\r\n\r\nhi\r\n")
        st = os.stat(maillog)
        self.assertEqual((pwd.getpwuid(st.st_uid).pw_name, stat.S_IMODE(st.st_mode)),
                         ("mta", 0o640))
        d.wait_log(r"from=<rot@example\.com>")  # in the new file
        with open(maillog + ".1") as f:
            old = f.read()
        self.assertIn("daemon started", old)
        self.assertNotIn("rot@example.com", old)


class Deb(mtatest.MtaTestCase):

    def setUp(self):
        super().setUp()
        for tool in ("cmake", "cpack", "dpkg-deb", "dpkg-shlibdeps"):
            if not shutil.which(tool):
                self.skipTest("%s missing (dpkg-dev)" % tool)

    def test_cpack_refuses_a_usr_local_deb(self):
        b = os.path.join(self.tmp, "b-local")
        run(["cmake", "-S", mtatest.SRCDIR, "-B", b, "-DBUILD_TESTING=OFF",
             "-DCMAKE_INSTALL_PREFIX=/usr/local"], t(120))
        r = subprocess.run(["cpack", "-G", "DEB"], cwd=b, capture_output=True, text=True,
                           timeout=t(120))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("configure one with -DCMAKE_INSTALL_PREFIX=/usr",
                      " ".join((r.stdout + r.stderr).split()))
        self.assertEqual(glob.glob(os.path.join(b, "*.deb")), [])

    def test_packagers_build_gives_a_deb(self):
        b = os.path.join(self.tmp, "b")
        run(["cmake", "-S", mtatest.SRCDIR, "-B", b, "-DBUILD_TESTING=OFF",
             "-DCMAKE_INSTALL_PREFIX=/usr"], t(120))
        run(["cmake", "--build", b, "-j2"], t(240))
        run(["cpack", "-G", "DEB"], t(240), cwd=b)
        debs = glob.glob(os.path.join(b, "mta_*.deb"))
        self.assertEqual(len(debs), 1, os.listdir(b))
        deb = debs[0]

        info = run(["dpkg-deb", "--info", deb], t(30))
        fields = dict(re.findall(r"(?m)^ ([A-Za-z-]+): (.*)$", info))
        self.assertEqual(fields["Package"], "mta")
        # Debian policy 11.6: an MTA provides, conflicts with and replaces the virtual package
        for field in ("Provides", "Conflicts", "Replaces"):
            self.assertEqual(fields.get(field), "mail-transport-agent", field)
        self.assertEqual(fields["Section"], "mail")
        # dpkg-shlibdeps: the shared libraries the programs link
        for lib in ("libc6", "libevent-2.1-7", "libssl3", "libc-ares2", "libsasl2-2",
                    "libsystemd0", "passwd", "libopendkim11"):
            self.assertRegex(fields["Depends"], r"(^|, )%s( \(|,|$)" % re.escape(lib))
        for script in ("postinst", "prerm", "postrm", "conffiles"):
            self.assertRegex(info, r"(?m)^ +\d+ bytes, +\d+ lines +%s" % script
                             if script == "conffiles" else
                             r"(?m)^ +\d+ bytes, +\d+ lines +\* +%s " % script)
        conffiles = run(["dpkg-deb", "--info", deb, "conffiles"], t(30)).split()
        self.assertEqual(sorted(conffiles), ["/etc/logrotate.d/mta", "/etc/mta/mtad.conf"])
        postinst = run(["dpkg-deb", "--info", deb, "postinst"], t(30))
        self.assertRegex(postinst, r"useradd --system [^\n]*\\\n[^\n]* mta\n")
        self.assertIn('install -d -m 0700 -o mta -g mta "$SPOOL"', postinst)
        self.assertIn("SPOOL=/var/spool/mta", postinst)
        self.assertIn("groupadd --system mtadrop", postinst)
        self.assertIn('dpkg-statoverride --update --add root mtadrop 2755 "$SBIN/$prog"', postinst)
        self.assertIn("for prog in postdrop postqueue; do", postinst)
        self.assertIn('install -d -m 1730 -o mta -g mtadrop "$SPOOL/maildrop"', postinst)
        for script in ("postinst", "prerm", "postrm"):
            body = run(["dpkg-deb", "--info", deb, script], t(30))
            body = re.sub(r"(?m)^\s*#.*\n", "", body)  # the commands, not the comments
            self.assertNotRegex(body, r"systemctl (enable|start)|deb-systemd-helper enable",
                                script + " enables or starts a service")
            if script == "postrm":
                self.assertNotRegex(body, r"(?m)^\s*rm [^\n]*(SPOOL|/var/spool)")

        contents = run(["dpkg-deb", "--contents", deb], t(30))
        entries = {}
        for line in contents.splitlines():
            f = line.split()
            entries[f[-1].lstrip(".")] = (f[0], f[1])
        want = {
            "/usr/sbin/mtad": "-rwxr-xr-x", "/usr/sbin/mtactl": "-rwxr-xr-x",
            "/etc/mta/mtad.conf": "-rw-r-----", "/etc/logrotate.d/mta": "-rw-r--r--",
            "/usr/lib/systemd/system/mtad.service": "-rw-r--r--",
            "/usr/share/man/man8/mtad.8.gz": "-rw-r--r--",
            "/usr/share/man/man8/mtactl.8.gz": "-rw-r--r--",
            "/usr/share/man/man5/mtad.conf.5.gz": "-rw-r--r--",
            "/usr/sbin/sendmail": "-rwxr-xr-x", "/usr/sbin/postdrop": "-rwxr-xr-x",
            "/usr/share/man/man1/sendmail.1.gz": "-rw-r--r--",
        }
        for path, mode in want.items():
            self.assertIn(path, entries, contents)
            self.assertEqual(entries[path], (mode, "root/root"), path)
        links = dict(re.findall(r"(?m)^l\S+ \S+ +\d+ [\d-]+ [\d:]+ \.(\S+) -> (\S+)$", contents))
        self.assertEqual({k: v for k, v in links.items() if "sendmail" in v},
                         {"/usr/bin/mailq": "../sbin/sendmail",
                          "/usr/bin/newaliases": "../sbin/sendmail",
                          "/usr/lib/sendmail": "../sbin/sendmail"}, contents)
        # the queue is created by postinst and never owned by dpkg (dpkg -r keeps it)
        self.assertFalse([p for p in entries if p.startswith("/var/")], contents)
        self.assertFalse([p for p in entries if p.startswith("/usr/local")], contents)

        # the package's own programs, unpacked into a scratch root: its sendmail (through
        # /usr/bin/mailq's target and the postdrop beside it) hands a message to its mtad
        root = os.path.join(self.tmp, "root")
        run(["dpkg-deb", "-x", deb, root], t(60))
        os.chmod(root, 0o755)
        self.send_through_unpacked(root)

    def send_through_unpacked(self, root):
        """send_through_unpacked - start ROOT/usr/sbin/mtad with ROOT's configuration (paths
        and ports moved by later lines) and pipe a message to ROOT/usr/sbin/sendmail -t -i."""
        sink = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(sink.stop)
        d = mtatest.Daemon(self.tmp, name="unpacked")
        self.addCleanup(d._hold_sock.close)
        d.smtp_port, d.ui_port = mtatest.free_port(), mtatest.free_port()
        conf = os.path.join(self.tmp, "unpacked.cf")
        with open(os.path.join(root, "etc/mta/mtad.conf")) as f:
            text = f.read()
        text += ("\ndata_volume = %s\nmaillog_file = %s\nsmtp_port = %d\nui_port = %d\n"
                 "smart_relay = [127.0.0.1]:%d\n"
                 % (d.data_volume, d.maillog_path, d.smtp_port, d.ui_port, sink.port))
        if os.geteuid() != 0:
            text += "mail_owner = %s\n" % pwd.getpwuid(os.geteuid()).pw_name
        with open(conf, "w") as f:
            f.write(text)
        err = open(os.path.join(self.tmp, "unpacked.stderr"), "wb")
        self.addCleanup(err.close)
        proc = subprocess.Popen([os.path.join(root, "usr/sbin/mtad"), "-c", conf], stderr=err,
                                stdout=subprocess.DEVNULL)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        deadline = time.monotonic() + t(10)
        while not os.path.isdir(os.path.join(d.data_volume, "maildrop")):
            self.assertIsNone(proc.poll(), "the unpacked mtad exited")
            self.assertLess(time.monotonic(), deadline, "no maildrop")
            time.sleep(0.1)
        sendmail = os.path.realpath(os.path.join(root, "usr/bin/mailq"))
        self.assertEqual(sendmail, os.path.join(os.path.realpath(root), "usr/sbin/sendmail"))
        r = subprocess.run([sendmail, "-C", conf, "-t", "-i"],
                           input=b"To: deb@dst.test\nSubject: from the .deb\n\nhi\n",
                           capture_output=True, timeout=t(30))
        self.assertEqual((r.returncode, r.stderr), (0, b""))
        msgs = sink.wait_messages(1, t(15))
        self.assertEqual([m.rcpts for m in msgs], [["deb@dst.test"]])
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(t(30)), 0)


if __name__ == "__main__":
    mtatest.main()
