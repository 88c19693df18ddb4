"""
test_privilege.py - least privilege (docs/security.md "Least privilege"): started as
root, mtad runs as mail_owner after start-up (every thread's user and group IDs, no
capabilities left), the data volume below a root-only directory becomes mail_owner's
with mode 0700 (root's files in an old volume too, given in the background after the
greeting: a queue restored by root is delivered, nothing quarantined), root-only keys
are read before the drop, ports below 1024 are bound before it; mail is accepted and
delivered, mtactl works, SIGHUP works (a root-only key cannot be re-read: the warning
says so, the old certificate stays). A missing or root mail_owner is a start-up error naming the
setting; started as another user (nobody) mtad stays that user.
Not here: the systemd unit and sd_notify (test_systemd.py).
"""

import grp
import os
import pwd
import random
import re
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
import tlskeys  # noqa: E402
from mtatest import t  # noqa: E402

PRECONFIGURE = "Error: Failed to pre-configure MTA."
MSG = b"Subject: privilege\r\nMessage-ID: <priv@client.example>\r\n\r\nhello\r\n"


def privileged_port():
    """privileged_port - a port below 1024 that is free on 127.0.0.1 right now."""
    for p in random.sample(range(600, 1000), 400):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
    raise unittest.SkipTest("no free port below 1024")


def noverify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def proc_ids(path):
    """proc_ids - {"Uid": [...], "Gid": [...], "Groups": [...], "CapEff": int, ...}."""
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = [int(x) for x in v.split()]
            elif k in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
                out[k] = int(v.strip(), 16)
    return out


@unittest.skipUnless(os.geteuid() == 0, "needs root (mtad must start as root to drop)")
class StartedAsRoot(mtatest.MtaTestCase):

    def setUp(self):
        super().setUp()
        try:
            self.owner = pwd.getpwnam(mtatest.MAIL_OWNER)
        except KeyError:
            self.fail("account %s missing (scripts/test.sh creates it)" % mtatest.MAIL_OWNER)

    def test_runs_as_mail_owner_on_a_root_only_path(self):
        o = self.owner
        private = os.path.join(self.tmp, "private")
        os.mkdir(private, 0o700)  # root-only: the path above the data volume and the keys
        keys = os.path.join(private, "keys")
        tlskeys.make_keys(keys)  # root:root, key mode 0600
        sink = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(sink.stop)
        ui, smtps = privileged_port(), privileged_port()
        while smtps == ui:
            smtps = privileged_port()
        d = self.daemon(settings=dict(tlskeys.tls_settings(keys), smtps_port=str(smtps),
                                      ui_port=str(ui),
                                      smart_relay="[127.0.0.1]:%d" % sink.port), start=False)
        d.data_volume = os.path.join(private, "spool", "data")
        # an old volume of a daemon that ran as root: root's files, group/world-readable
        os.makedirs(os.path.join(d.data_volume, "corrupt"))
        planted = os.path.join(d.data_volume, "corrupt", "old-root-file")
        with open(planted, "wb") as f:
            f.write(b"kept\n")
        os.chmod(planted, 0o600)
        os.chmod(d.data_volume, 0o755)
        d.start()

        # every thread of the process: mail_owner's IDs, supplementary groups plus
        # setgid_group (it reads the maildrop, owns the socket's group), no capabilities
        drop = grp.getgrnam("mtadrop").gr_gid
        groups = sorted(set(os.getgrouplist(o.pw_name, o.pw_gid)) | {drop})
        tasks = os.listdir("/proc/%d/task" % d.pid())
        self.assertGreater(len(tasks), 1, "expected worker threads")
        for tid in tasks:
            ids = proc_ids("/proc/%d/task/%s/status" % (d.pid(), tid))
            self.assertEqual(ids["Uid"], [o.pw_uid] * 4, "thread %s" % tid)
            self.assertEqual(ids["Gid"], [o.pw_gid] * 4, "thread %s" % tid)
            self.assertEqual(sorted(ids["Groups"]), groups, "thread %s" % tid)
            self.assertEqual((ids["CapEff"], ids["CapPrm"]), (0, 0), "thread %s" % tid)
        d.wait_log(r"master\[%d\]: running as %s \(uid %d, gid %d\)"
                   % (d.pid(), o.pw_name, o.pw_uid, o.pw_gid))

        # the files are given in the background, while SMTP is already served: its report
        d.wait_log(r"master\[%d\]: data volume %s: 1 entries given to %s"
                   % (d.pid(), re.escape(d.data_volume), o.pw_name))
        # the data volume and everything in it: mail_owner's; the volume itself 0710 and
        # the maildrop 1730, both of group setgid_group (postdrop and postqueue enter)
        st = os.stat(d.data_volume)
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)),
                         (o.pw_uid, drop, 0o710))
        md = os.stat(os.path.join(d.data_volume, "maildrop"))
        self.assertEqual((md.st_uid, md.st_gid, stat.S_IMODE(md.st_mode)),
                         (o.pw_uid, drop, 0o1730))
        for root, dirs, files in os.walk(d.data_volume):
            for n in dirs + files:
                p = os.path.join(root, n)
                s = os.lstat(p)
                want = drop if p in (os.path.join(d.data_volume, "maildrop"),
                                     os.path.join(d.data_volume, "control")) else o.pw_gid
                self.assertEqual((s.st_uid, s.st_gid), (o.pw_uid, want), p)
        with open(planted, "rb") as f:
            self.assertEqual(f.read(), b"kept\n")
        ctl = os.stat(os.path.join(d.data_volume, "control"))
        self.assertTrue(stat.S_ISSOCK(ctl.st_mode))
        self.assertEqual((ctl.st_uid, ctl.st_gid, stat.S_IMODE(ctl.st_mode)),
                         (o.pw_uid, drop, 0o660))
        # the directory above stays root's
        self.assertEqual(os.stat(private).st_uid, 0)

        # mail in and out
        with d.smtp() as s:
            s.ehlo("client.example")
            s.sendmail("s@example.org", ["r@example.com"], MSG)
        msgs = sink.wait_messages(1, t(10))
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"hello", msgs[0].data)
        d.wait_log(r"to=<r@example\.com>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent"
                   % sink.port)

        # SMTPS below 1024 with the root-only key read before the drop; HTTP below 1024
        with smtplib.SMTP_SSL("127.0.0.1", smtps, context=noverify(), timeout=t(10)) as c:
            self.assertEqual(c.ehlo("client.example")[0], 250)
        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % ui, timeout=t(10)) as r:
            self.assertEqual(r.status, 200)

        # mtactl (root) talks to the socket
        p = subprocess.run([mtatest.MTACTL, "-c", d.config_path, "stats"], capture_output=True,
                           text=True, timeout=t(20))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"(?m)^received 1$")

        # SIGHUP: handled; the root-only key cannot be re-read as mail_owner, which the
        # warning says; the certificate in use stays
        os.kill(d.pid(), signal.SIGHUP)
        d.wait_log(r"master\[\d+\]: reload -- version")
        d.wait_log(r"warning: certificate reload failed, keeping the current one: .*Permission "
                   r"denied.*\(mtad runs as mail_owner %s: make the files readable by it, or "
                   r"restart mtad\)" % o.pw_name)
        self.assertTrue(d.running())
        with smtplib.SMTP_SSL("127.0.0.1", smtps, context=noverify(), timeout=t(10)) as c:
            self.assertEqual(c.ehlo("client.example")[0], 250)
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(os.path.join(d.data_volume, "control")),
                         "the daemon removes its socket at exit")

    def test_root_owned_queue_is_delivered_after_start(self):
        # a queue restored by root (cp -a, tar as root): every file root's, mode 0600. The
        # files are given back in the background after the greeting; no message may be
        # read (and quarantined as unreadable) before it is mail_owner's again
        d = self.daemon(settings=dict(minimal_backoff_time="1s", maximal_backoff_time="1s"))
        with d.smtp() as s:
            s.ehlo("client.example")
            for i in range(20):
                s.sendmail("s@example.org", ["r%d@example.com" % i], MSG)
        self.assertEqual(len(self.wait_queued(d, 20)), 20)
        self.assertEqual(d.stop(), 0)
        files = 0
        for root, dirs, names in os.walk(d.data_volume):
            for n in dirs + names:
                p = os.path.join(root, n)
                if not os.path.islink(p) and not p.startswith(
                        os.path.join(d.data_volume, "maildrop")):
                    os.chown(p, 0, 0)
                    files += n.isalnum() and os.path.isfile(p)
        self.assertGreaterEqual(files, 20)
        sink = smtpsink.Sink("127.0.0.1", 0).start()
        self.addCleanup(sink.stop)
        d.user_settings["smart_relay"] = "[127.0.0.1]:%d" % sink.port
        d.start()
        d.wait_log(r"master\[%d\]: data volume %s: \d+ entries given to %s"
                   % (d.pid(), re.escape(d.data_volume), self.owner.pw_name))
        msgs = sink.wait_messages(20, t(20))
        self.assertEqual(sorted(m.rcpts[0] for m in msgs),
                         sorted("r%d@example.com" % i for i in range(20)))
        self.assertEqual(os.listdir(os.path.join(d.data_volume, "corrupt")), [])

    def test_control_socket_peers(self):
        """The control socket: setgid_group may connect, but runs only public commands;
        other users cannot connect at all."""
        os.chmod(self.tmp, 0o711)  # the path above the volume: enterable, as /var/spool
        d = self.daemon()
        sock = os.path.join(d.data_volume, "control")
        ask = ("import socket,sys\n"
               "s=socket.socket(socket.AF_UNIX)\n"
               "try:\n"
               "    s.connect(sys.argv[1])\n"
               "except OSError as e:\n"
               "    print('connect:', e.strerror); sys.exit(0)\n"
               "s.sendall(b'stats\\n'); print(s.makefile().readline().strip())\n")

        def as_nobody(*group):
            p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=" + (group or ("nogroup",))[0],
                                "--clear-groups", sys.executable, "-c", ask, sock],
                               capture_output=True, text=True, timeout=t(20))
            self.assertEqual(p.returncode, 0, p.stderr)
            return p.stdout.strip()

        self.assertEqual(as_nobody("mtadrop"),
                         "error: permission denied: stats is reserved for the superuser")
        self.assertEqual(as_nobody(), "connect: Permission denied")
        p = subprocess.run([mtatest.MTACTL, "-c", d.config_path, "stats"], capture_output=True,
                           text=True, timeout=t(20))
        self.assertEqual(p.returncode, 0, p.stderr)  # root still runs everything

    def test_missing_setgid_group_names_it(self):
        d = self.daemon(overrides=["setgid_group=nosuch-mta-group"], start=False)
        with self.assertRaises(mtatest.StartError):
            d.start()
        self.assertIn('mtad: setgid_group: group "nosuch-mta-group" does not exist', d.stderr())
        self.assertIn("groupadd --system nosuch-mta-group", d.stderr())

    def start_refused(self, owner):
        d = self.daemon(overrides=["mail_owner=" + owner], start=False)
        with self.assertRaises(mtatest.StartError):
            d.start()
        self.assertNotEqual(d.proc.returncode, 0)
        err = d.stderr()
        self.assertEqual(err.strip().splitlines()[-1], PRECONFIGURE, err)
        self.assertFalse(os.path.exists(d.data_volume), "nothing is made before the check")
        return err

    def test_missing_account_names_mail_owner(self):
        err = self.start_refused("nosuch-mta-owner")
        self.assertIn('mtad: mail_owner: user "nosuch-mta-owner" does not exist', err)
        self.assertIn("useradd --system", err)

    def test_root_account_refused(self):
        err = self.start_refused("root")
        self.assertIn('mtad: mail_owner: user "root" has the user ID of root', err)


@unittest.skipUnless(os.geteuid() == 0, "needs root to start mtad as another user")
class StartedAsAnotherUser(mtatest.MtaTestCase):

    def test_stays_that_user_and_ignores_mail_owner(self):
        nobody = pwd.getpwnam("nobody")
        home = os.path.join(self.tmp, "nobody")
        os.mkdir(home, 0o700)
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        port, ui = mtatest.free_port(), mtatest.free_port()
        # deliveries go to a port bound but never listening: the mail stays deferred
        hold = socket.socket()
        hold.bind(("127.0.0.1", 0))
        self.addCleanup(hold.close)
        cf = os.path.join(home, "mtad.cf")
        with open(cf, "w") as f:
            f.write("hostname = %s\ndata_volume = %s/data\nmaillog_file = %s/maillog\n"
                    "in_address = 127.0.0.1\nsmtp_port = %d\nui_port = %d\n"
                    "smtpd_trusted_networks = 127.0.0.1/32\nsmart_relay = [127.0.0.1]:%d\n"
                    "mail_owner = nosuch-mta-owner\n"  # not used: no root, no drop
                    % (mtatest.HOSTNAME, home, home, port, ui, hold.getsockname()[1]))
        os.chown(cf, nobody.pw_uid, nobody.pw_gid)

        def become_nobody():
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)

        err = open(os.path.join(self.tmp, "nobody.stderr"), "wb")
        proc = subprocess.Popen([mtatest.MTAD, "-c", cf], stdout=subprocess.DEVNULL, stderr=err,
                                preexec_fn=become_nobody, cwd=home)
        err.close()

        def stop():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.addCleanup(stop)
        deadline = time.monotonic() + t(10)
        while True:
            if proc.poll() is not None:
                with open(os.path.join(self.tmp, "nobody.stderr")) as f:
                    self.fail("mtad exited with %d: %s" % (proc.returncode, f.read()))
            try:
                with mtatest.RawClient(port, timeout=t(2)) as c:
                    c.greeting()
                    break
            except (OSError, mtatest.ConnectionClosed, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        ids = proc_ids("/proc/%d/status" % proc.pid)
        self.assertEqual(ids["Uid"], [nobody.pw_uid] * 4)
        self.assertEqual(ids["Gid"], [nobody.pw_gid] * 4)
        with mtatest.RawClient(port) as c:
            c.greeting()
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<r@example.com>"), 250)
            self.assertReply(c.cmd("DATA"), 354)
            c.send(MSG + b".\r\n")
            self.assertReply(c.reply(), 250, "2.0.0 Ok: queued as ")
        self.assertEqual(os.stat(os.path.join(home, "data")).st_uid, nobody.pw_uid)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(t(15)), 0)
        with open(os.path.join(home, "maillog")) as f:
            log = f.read()
        self.assertNotIn("running as", log)
        self.assertNotRegex(log, r": (warning|fatal|error): ")


if __name__ == "__main__":
    mtatest.main()
