"""
test_systemd.py - mtad under a service manager: etc/mtad.service passes
`systemd-analyze verify` (on a copy whose ExecStart names this build's mtad) and
`systemd-analyze security --offline=yes`, whose exposure score the test prints (and
keeps below 4.0, "OK"); the sd_notify protocol (Type=notify) seen from a Python
datagram socket standing in for systemd: READY=1 once the SMTP port answers,
WATCHDOG=1 pings when WATCHDOG_USEC asks for them, STOPPING=1 at SIGTERM.
Not here: the privilege drop itself (test_privilege.py).
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import t  # noqa: E402

UNIT = os.path.join(mtatest.SRCDIR, "etc", "mtad.service")


class Unit(mtatest.MtaTestCase):

    def unit_copy(self):
        """unit_copy - etc/mtad.service with ExecStart naming this build's mtad (verify
        checks that the binary exists)."""
        with open(UNIT) as f:
            text = f.read()
        self.assertIn("ExecStart=/usr/sbin/mtad ", text)
        path = os.path.join(self.tmp, "mtad.service")
        with open(path, "w") as f:
            f.write(text.replace("ExecStart=/usr/sbin/mtad ",
                                 "ExecStart=%s " % os.path.abspath(mtatest.MTAD)))
        return path

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze missing (systemd)")
    def test_verify_is_clean(self):
        p = subprocess.run(["systemd-analyze", "verify", self.unit_copy()], capture_output=True,
                           text=True, timeout=t(60), cwd=self.tmp)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual((p.stdout + p.stderr).strip(), "", "verify printed warnings")

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze missing (systemd)")
    def test_security_exposure(self):
        p = subprocess.run(["systemd-analyze", "security", "--offline=yes", self.unit_copy()],
                           capture_output=True, text=True, timeout=t(60), cwd=self.tmp)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        m = re.search(r"Overall exposure level for mtad\.service: ([0-9.]+) (\w+)", p.stdout)
        self.assertTrue(m, p.stdout[-2000:])
        print("\nsystemd-analyze security: exposure %s %s" % (m.group(1), m.group(2)))
        self.assertLess(float(m.group(1)), 4.0, p.stdout)


class Notify(mtatest.MtaTestCase):
    """A stand-in for systemd's notification socket (abstract namespace: no file
    permissions to reach, which matters after the drop to mail_owner)."""

    def setUp(self):
        super().setUp()
        self.name = "mtatest-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.addCleanup(self.sock.close)
        self.messages = []  # (monotonic time, text)
        self.lock = threading.Condition()
        self.stop_reader = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.addCleanup(self._stop)

    def _stop(self):
        self.stop_reader = True
        self.reader.join(5)

    def _read(self):
        self.sock.settimeout(0.1)
        while not self.stop_reader:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))
                self.lock.notify_all()

    def wait_for(self, field, timeout, count=1):
        """wait_for - the times of the first COUNT messages that carry FIELD (e.g. READY=1)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                hits = [ts for ts, m in self.messages if field in m.split("\n")]
                if len(hits) >= count:
                    return hits
                left = deadline - time.monotonic()
                if left <= 0:
                    self.fail("no %d x %s from mtad; got %r" % (count, field, self.messages))
                self.lock.wait(left)

    def test_ready_watchdog_stopping(self):
        d = self.daemon(env={"NOTIFY_SOCKET": "@" + self.name, "WATCHDOG_USEC": "400000"},
                        start=False)
        answered = {}

        def probe():
            # the moment READY=1 arrives, the SMTP port must already answer
            self.wait_for("READY=1", t(20))
            try:
                with mtatest.RawClient(d.smtp_port, timeout=t(5)) as c:
                    answered["greeting"] = c.reply().code
            except (OSError, mtatest.ConnectionClosed, AssertionError) as e:
                answered["error"] = repr(e)

        th = threading.Thread(target=probe)
        th.start()
        d.start()
        th.join(t(30))
        self.assertEqual(answered, {"greeting": 220})
        self.assertEqual(len(self.wait_for("READY=1", 0)), 1)
        # WatchdogSec: a ping every WATCHDOG_USEC/2 from the event loop
        pings = self.wait_for("WATCHDOG=1", t(5), count=4)
        self.assertLess(pings[3] - pings[0], t(3.0))
        self.assertEqual([m for _, m in self.messages if "STOPPING=1" in m.split("\n")], [])
        self.assertEqual(d.stop(), 0)
        self.wait_for("STOPPING=1", t(2))


if __name__ == "__main__":
    mtatest.main()
