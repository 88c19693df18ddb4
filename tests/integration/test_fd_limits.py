"""
test_fd_limits.py - descriptors as a bounded resource, as an administrator sees
it: the open-file limit raised at start-up (and a start-up error naming
smtpd_session_limit when it cannot be), the SMTP and HTTP listeners pausing
instead of spinning when accept() fails with EMFILE (low CPU, a few log lines,
service again once descriptors are free), HTTP connections bounded in number
(http_connection_limit, idle ones too) and in idle time (http_timeout), and
wrong web UI passwords throttled per client (http_auth_failure_limit).
The descriptor shortage is made by lowering the running daemon's RLIMIT_NOFILE
(prlimit), so it needs root or the same user (the tests run as root).
Not here: the session limits of SMTP (test_smtp_limits.py).
"""

import base64
import ctypes
import http.client
import os
import resource
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import t  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """cpu_seconds - user + system CPU time of PID so far (all threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def nofile_soft(pid):
    """nofile_soft - the soft 'Max open files' of PID as /proc shows it."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                v = line.split()[3]
                return -1 if v == "unlimited" else int(v)
    raise AssertionError("no Max open files line")


def prlimit_nofile(pid, limits=None):
    """prlimit_nofile - RLIMIT_NOFILE of process PID, set to LIMITS when given. mtad started
    as root runs as mail_owner, and without CAP_SYS_RESOURCE only a process of the same user
    may change its limits: a child takes that user's IDs and does it."""
    with open("/proc/%d/status" % pid) as f:
        ids = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
    uid, gid = int(ids["Uid"].split()[0]), int(ids["Gid"].split()[0])
    if uid == os.getuid():
        return resource.prlimit(pid, resource.RLIMIT_NOFILE, *([limits] if limits else []))
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            got = resource.prlimit(pid, resource.RLIMIT_NOFILE, *([limits] if limits else []))
            os.write(w, ("%d %d" % got).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 100).decode()
    os.close(r)
    os.waitpid(child, 0)
    if not out:
        raise AssertionError("cannot change the open-file limit of mtad (pid %d)" % pid)
    soft, hard = out.split()
    return int(soft), int(hard)


def connect(port, source=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(t(10))
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def http_get(port, path, auth=None, source=None):
    """http_get - one request on a fresh connection: (status, headers lower-cased, body)."""
    s = connect(port, source)
    try:
        h = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % path
        if auth:
            h += "Authorization: Basic %s\r\n" % base64.b64encode(auth.encode()).decode()
        s.sendall((h + "\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def closed_within(sock, seconds):
    """closed_within - True when the peer closes SOCK within SECONDS (bytes read are dropped)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(4096):
                return True
        except socket.timeout:
            return False
        except OSError:
            return True


class OpenFileLimit(mtatest.MtaTestCase):
    """RLIMIT_NOFILE at start-up."""

    def test_soft_limit_raised_to_what_the_limits_need(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # the daemon inherits a soft limit of 1024 (Debian's default for a service)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        try:
            d = self.daemon(settings={"smtpd_session_limit": "3000"})
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # 2 per session + http_connection_limit 128 + default_process_limit 100 + 256
        self.assertGreaterEqual(nofile_soft(d.pid()), 2 * 3000 + 128 + 100 + 256)
        d.wait_log(r"open-file limit raised from 1024 to %d" % (2 * 3000 + 128 + 100 + 256))

    def run_limited(self, hard, settings):
        """run_limited - mtad as root without CAP_SYS_RESOURCE (like a container's root or a
        non-root user: it cannot raise its hard limit) under hard limit HARD. Returns the
        daemon object and the Popen (still running unless it failed to start)."""
        d = self.daemon(settings=settings, start=False)
        d.smtp_port = mtatest.free_port()
        d.ui_port = mtatest.free_port()
        d.write_config()

        def limit():
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(24, 24, 0, 0, 0)  # PR_CAPBSET_DROP, CAP_SYS_RESOURCE
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

        err = open(d.stderr_path, "ab")
        p = subprocess.Popen([mtatest.MTAD, "-c", d.config_path], stdout=subprocess.DEVNULL,
                             stderr=err, preexec_fn=limit, cwd=self.tmp)
        err.close()
        d.proc = p
        return d, p

    def test_limit_that_cannot_be_had_is_a_start_up_error(self):
        d, p = self.run_limited(1000, {"smtpd_session_limit": "2000"})
        self.assertEqual(p.wait(t(10)), 1)
        err = d.stderr()
        self.assertIn("smtpd_session_limit = 2000 needs at least 2484 open files", err)
        self.assertIn("hard limit of open files (RLIMIT_NOFILE) is 1000", err)

    def test_hard_limit_between_need_and_want_is_used(self):
        # need 500 + 128 + 100 + 256 = 984, want 1484: the hard limit of 1200 is all there is
        d, p = self.run_limited(1200, {"smtpd_session_limit": "500"})
        deadline = time.monotonic() + t(10)
        while "daemon started" not in d.maillog():
            self.assertIsNone(p.poll(), "mtad exited: %s" % d.stderr())
            self.assertLess(time.monotonic(), deadline, "mtad did not start")
            time.sleep(0.05)
        self.assertEqual(nofile_soft(p.pid), 1200)


class AcceptBackoff(mtatest.MtaTestCase):
    """accept() failing with EMFILE pauses the listener instead of spinning."""

    def starve(self, d, spare=6):
        """starve - lower the running daemon's soft limit to its open descriptors + SPARE."""
        pid = d.pid()
        self.old_limit = prlimit_nofile(pid)
        prlimit_nofile(pid, (open_fds(pid) + spare, self.old_limit[1]))
        self.addCleanup(self.unstarve, d)

    def unstarve(self, d):
        if d.running():
            prlimit_nofile(d.pid(), self.old_limit)

    def flood(self, d, port, n):
        """flood - N connections to PORT (they wait in the listen queue when not accepted)."""
        socks = []
        for _ in range(n):
            socks.append(connect(port))
        return socks

    def check_quiet(self, d, pattern):
        """check_quiet - over 3 s the daemon uses little CPU and logs few accept lines."""
        time.sleep(0.5)  # the first failures happen now
        c0 = cpu_seconds(d.pid())
        time.sleep(3)
        used = cpu_seconds(d.pid()) - c0
        self.assertLess(used, 0.5, "mtad used %.2f s CPU in 3 s while out of descriptors" % used)
        text = d.maillog() + d.stderr()
        lines = [l for l in text.splitlines() if pattern in l]
        self.assertGreaterEqual(len(lines), 1, "no accept failure logged")
        self.assertLessEqual(len(lines), 4, "accept failures logged %d times" % len(lines))

    def test_smtp_listener_pauses_on_emfile(self):
        d = self.daemon(settings={"smtpd_client_connection_count_limit": "0"})
        self.starve(d)
        socks = self.flood(d, d.smtp_port, 30)
        try:
            self.check_quiet(d, "accept: Too many open files")
        finally:
            for s in socks:
                s.close()
        # descriptors are free again: new clients are served (the pause ends by itself)
        deadline = time.monotonic() + t(10)
        while True:
            try:
                with d.client(timeout=t(3)) as c:
                    self.assertEqual(c.cmd("QUIT").code, 221)
                break
            except (OSError, mtatest.ConnectionClosed, AssertionError):
                self.assertLess(time.monotonic(), deadline, "SMTP not served again")
                time.sleep(0.2)

    def test_http_listener_pauses_on_emfile(self):
        d = self.daemon()  # 30 connections are below http_connection_limit (128)
        self.starve(d)
        socks = self.flood(d, d.ui_port, 30)
        try:
            self.check_quiet(d, "Too many open files")
        finally:
            for s in socks:
                s.close()
        deadline = time.monotonic() + t(10)
        while True:
            try:
                if http_get(d.ui_port, "/healthz")[0] == 200:
                    break
            except (OSError, ValueError, IndexError):
                pass
            self.assertLess(time.monotonic(), deadline, "HTTP not served again")
            time.sleep(0.2)


class HttpConnections(mtatest.MtaTestCase):
    """http_connection_limit and http_timeout."""

    def test_idle_connections_count_against_the_limit(self):
        # the default limit is 128: idle connections (no request yet) count too
        d = self.daemon()
        idle = [connect(d.ui_port) for _ in range(128)]
        try:
            time.sleep(0.3)
            s = connect(d.ui_port)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            s.close()
            self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 503"),
                            "connection 129 was served: %r" % data[:200])
        finally:
            for x in idle:
                x.close()
        # the slots are free again
        deadline = time.monotonic() + t(5)
        while http_get(d.ui_port, "/healthz")[0] != 200:
            self.assertLess(time.monotonic(), deadline, "limit not released after close")
            time.sleep(0.1)

    def test_limit_and_idle_timeout_settings(self):
        d = self.daemon(settings={"http_connection_limit": "3", "http_timeout": "2s"})
        idle = [connect(d.ui_port) for _ in range(3)]
        time.sleep(0.3)
        status, _, body = http_get(d.ui_port, "/healthz")
        self.assertEqual(status, 503)
        self.assertIn(b"Too many connections", body)
        # idle connections are closed after http_timeout, and then others are served
        t0 = time.monotonic()
        for x in idle:
            self.assertTrue(closed_within(x, t(6)), "idle connection not closed")
            x.close()
        self.assertGreater(time.monotonic() - t0, 1.0)
        self.assertEqual(http_get(d.ui_port, "/healthz")[0], 200)
        # a keep-alive connection idle after its request is closed too
        c = http.client.HTTPConnection("127.0.0.1", d.ui_port, timeout=t(10))
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertTrue(closed_within(c.sock, t(6)), "idle keep-alive connection not closed")
        c.close()


class HttpAuthThrottle(mtatest.MtaTestCase):
    """Wrong Basic credentials are throttled per client address."""

    USER, PASS = "admin", "right-pw"

    def test_wrong_passwords_get_429_for_that_client_only(self):
        d = self.daemon(settings={"username": self.USER, "password": self.PASS})
        # a browser's first request carries no credentials: it never counts
        for _ in range(8):
            self.assertEqual(http_get(d.ui_port, "/api/stats")[0], 401)
        for i in range(5):  # http_auth_failure_limit = 5
            st = http_get(d.ui_port, "/api/stats", auth="admin:guess%d" % i)[0]
            self.assertEqual(st, 401, "attempt %d" % i)
        st, h, _ = http_get(d.ui_port, "/api/stats", auth="admin:guess-more")
        self.assertEqual(st, 429)
        self.assertGreater(int(h.get("retry-after", "0")), 0)
        # locked out: even the right password is refused (no oracle for the guesser)
        self.assertEqual(http_get(d.ui_port, "/api/stats", auth="admin:right-pw")[0], 429)
        # another client is not affected, and /healthz stays open
        self.assertEqual(http_get(d.ui_port, "/api/stats", auth="admin:right-pw",
                                  source="127.0.0.2")[0], 200)
        self.assertEqual(http_get(d.ui_port, "/healthz")[0], 200)
        d.wait_log(r"stats.*127\.0\.0\.1: 5 failed web UI logins")

    def test_lockout_ends_and_success_resets(self):
        d = self.daemon(settings={"username": self.USER, "password": self.PASS,
                                  "http_auth_failure_limit": "3", "http_auth_lockout_time": "2s"})
        for i in range(3):
            self.assertEqual(http_get(d.ui_port, "/", auth="admin:x%d" % i)[0], 401)
        self.assertEqual(http_get(d.ui_port, "/", auth="admin:right-pw")[0], 429)
        time.sleep(2.5)
        self.assertEqual(http_get(d.ui_port, "/", auth="admin:right-pw")[0], 200)
        # a success forgets the failures: two more wrong ones do not lock
        for i in range(2):
            self.assertEqual(http_get(d.ui_port, "/", auth="admin:y%d" % i)[0], 401)
        self.assertEqual(http_get(d.ui_port, "/", auth="admin:right-pw")[0], 200)


if __name__ == "__main__":
    mtatest.main()
