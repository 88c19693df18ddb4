"""
mtatest.py - the integration-test harness: starts the real mtad on free loopback
ports in a private temp directory, talks to it with raw sockets, smtplib or swaks,
and reads what a user can observe (replies, the mail log, the spool files).
Not here: any test (those are tests/integration/test_*.py), nor knowledge of the
daemon's internals beyond the documented interface (interface.md, spool-format.md).

Environment: MTAD, MTACTL (the programs; default ../../build/), MTA_SANITIZE=ON
(ASan build: longer timeouts), MTA_KEEP=1 (keep a failed test's temp directory).
Standard library only.
"""

import errno
import faulthandler
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("MTA_SRCDIR") or os.path.dirname(os.path.dirname(HERE))


def _default_prog(name):
    for d in ("build", "build-itest"):
        p = os.path.join(SRCDIR, d, name)
        if os.path.exists(p):
            return p
    return os.path.join(SRCDIR, "build", name)


MTAD = os.environ.get("MTAD") or _default_prog("mtad")
MTACTL = os.environ.get("MTACTL") or _default_prog("mtactl")
SANITIZE = os.environ.get("MTA_SANITIZE", "").upper() in ("ON", "1", "YES", "TRUE")
# Timeouts are multiplied by this under ASan/UBSan, which is several times slower.
SLOW = 3.0 if SANITIZE else 1.0

HOSTNAME = "mta.test.example"
# Started as root (as the suite runs), mtad drops to mail_owner (default "mta", which
# scripts/test.sh creates) after start-up; files it opens later by name must be reachable
# by that account, as on a real host (docs/security.md "Least privilege").
MAIL_OWNER = "mta"


def give_to_mail_owner(*paths):
    """give_to_mail_owner - chown PATHS to MAIL_OWNER when running as root (what an
    administrator does for files mtad reads after the drop: sasldb, reloadable keys)."""
    if os.geteuid() != 0:
        return
    import pwd
    pw = pwd.getpwnam(MAIL_OWNER)
    for p in paths:
        os.chown(p, pw.pw_uid, pw.pw_gid)
QUEUE_ID_RE = re.compile(rb"queued as ([0-9A-Za-z]+)")


def t(seconds):
    """t - a timeout scaled for sanitizer builds."""
    return seconds * SLOW


def free_port(host="127.0.0.1"):
    """free_port - a port the kernel just gave us for HOST (bind port 0, close)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def loopback_block(port, hosts):
    """loopback_block - "127.X.Y." (X >= 1) for a test that must listen on a fixed PORT
    (e.g. MX sinks on 25), with 127.X.Y.H:PORT free for each H in HOSTS; None when PORT
    cannot be bound at all (not root). Fixed addresses collide with another run of the
    same file at the same time (a second build's ctest, or a chroot that shares this
    machine's network namespace), so each process claims a random /24: a socket bound,
    without SO_REUSEADDR and never listening, to 127.X.Y.1:PORT, held until the process
    exits, makes every other claim of that block fail."""
    import random
    for _ in range(100):
        prefix = "127.%d.%d." % (random.randint(1, 254), random.randint(0, 255))
        claim = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            claim.bind((prefix + "1", port))
            for h in hosts:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((prefix + str(h), port))
        except OSError as e:
            claim.close()
            if e.errno == errno.EACCES:
                return None
            continue
        import atexit
        atexit.register(claim.close)  # held until the process exits
        return prefix
    raise OSError(errno.EADDRINUSE, "no free 127.X.Y.0/24 block for port %d" % port)


def proc_where(pid):
    """proc_where - state, wchan and kernel stack of PID (what a hung process waits on)."""
    out = []
    for name in ("stat", "wchan", "stack"):
        try:
            with open("/proc/%d/%s" % (pid, name)) as f:
                out.append("%s: %s" % (name, f.read().strip()))
        except OSError as e:
            out.append("%s: %s" % (name, e))
    return "; ".join(out)


def have_ipv6_loopback():
    """have_ipv6_loopback - True when ::1 can be bound on this machine."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# raw SMTP client


class Reply:
    """One (possibly multi-line) SMTP reply."""

    def __init__(self, code, lines):
        self.code = code  # int
        self.lines = lines  # list of str, each line's text after "NNN-"/"NNN "

    @property
    def text(self):
        return "\n".join(self.lines)

    def __str__(self):
        return "%d %s" % (self.code, " / ".join(self.lines))

    __repr__ = __str__

    def full(self):
        """full - the last line as the client saw it, e.g. '250 2.0.0 Ok: queued as X'."""
        return "%d %s" % (self.code, self.lines[-1] if self.lines else "")


class ConnectionClosed(Exception):
    pass


class RawClient:
    """A byte-exact SMTP client on a plain socket, for protocol-level tests."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=None):
        self.timeout = timeout if timeout is not None else t(10)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if source:
                self.sock.bind((source, 0))
            self.sock.settimeout(self.timeout)
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self.buf = b""
        self.closed = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            raise ConnectionClosed("server closed the connection; unread: %r" % self.buf)
        self.buf += chunk

    def read_line(self, timeout=None):
        """read_line - one reply line without CRLF (bytes)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no reply line within timeout; have %r" % self.buf)
            self._fill(left)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def reply(self, timeout=None):
        """reply - read one complete (multi-line) reply."""
        lines = []
        while True:
            line = self.read_line(timeout)
            m = re.match(rb"^(\d{3})([ -])(.*)$", line)
            if not m:
                raise AssertionError("malformed reply line %r" % line)
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) == b" ":
                return Reply(int(m.group(1)), lines)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        """cmd - send LINE + CRLF and return the reply."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        return self.reply(timeout)

    def greeting(self):
        r = self.reply()
        if r.code != 220:
            raise AssertionError("greeting is not 220: %s" % r)
        return r

    def ehlo(self, name="client.example"):
        r = self.cmd("EHLO " + name)
        if r.code != 250:
            raise AssertionError("EHLO failed: %s" % r)
        return r

    def wait_closed(self, timeout=None):
        """wait_closed - True when the server closes the connection within TIMEOUT
        (any bytes that arrive meanwhile are kept in self.buf)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._fill(left)
            except ConnectionClosed:
                return True
            except socket.timeout:
                return False
            except OSError:
                return True


def queue_id_of(reply):
    """queue_id_of - the ID in '250 2.0.0 Ok: queued as ID' (str), or None."""
    m = re.search(r"queued as ([0-9A-Za-z]+)", reply if isinstance(reply, str) else reply.text)
    return m.group(1) if m else None


# --------------------------------------------------------------------------
# the daemon


class SenderThreads:
    """SenderThreads - N client threads running self.run(tid) until stopped; a subclass
    defines run() and fills self.acked (one entry per message that got its 250)."""

    def __init__(self, d, nthreads):
        self.d = d
        self.acked = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(nthreads)]

    def run(self, tid):
        raise NotImplementedError

    def start(self):
        for th in self.threads:
            th.start()

    def finish(self):
        self.stop.set()
        for th in self.threads:
            th.join(t(30))

    def count(self):
        with self.lock:
            return len(self.acked)


class StartError(Exception):
    pass


class Daemon:
    """One mtad process with its own config file, data volume, maillog and ports."""

    def __init__(self, workdir, settings=None, overrides=None, env=None, name="mtad"):
        self.workdir = workdir
        self.name = name
        self.data_volume = os.path.join(workdir, name + "-data")
        self.maillog_path = os.path.join(workdir, name + "-maillog")
        self.config_path = os.path.join(workdir, name + ".cf")
        self.stdout_path = os.path.join(workdir, name + ".stdout")
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        self.user_settings = dict(settings or {})
        self.overrides = list(overrides or [])
        self.env = dict(env or {})
        self.proc = None
        self.smtp_port = None
        self.ui_port = None
        self.host = self.user_settings.get("in_address") or "127.0.0.1"
        self.starts = 0
        self._stderr_offset = 0
        # a TCP port nobody listens on while this daemon lives (see settings())
        self._hold_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._hold_sock.bind(("127.0.0.1", 0))
        self.hold_port = self._hold_sock.getsockname()[1]

    # -- configuration --
    def settings(self):
        s = {
            "hostname": HOSTNAME,
            "data_volume": self.data_volume,
            "in_address": "127.0.0.1",
            "smtp_port": str(self.smtp_port),
            "ui_port": str(self.ui_port),
            "maillog_file": self.maillog_path,
            "smtpd_trusted_networks": "127.0.0.1/32",
            # Intake tests keep their mail queued: deliveries go to a port that is
            # bound but never listens (connection refused: deferred, never lost).
            "smart_relay": "[127.0.0.1]:%d" % self.hold_port,
        }
        s.update(self.user_settings)
        return s

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write("# written by mtatest.py\n")
            for k, v in self.settings().items():
                if v is None:
                    continue
                f.write("%s = %s\n" % (k, v))

    # -- life cycle --
    def start(self, timeout=None):
        """start - start mtad and wait for its 220 greeting; retry with new ports
        when a port was taken meanwhile."""
        timeout = timeout if timeout is not None else t(10)
        for attempt in range(5):
            if self.smtp_port is None or attempt > 0:
                self.smtp_port = free_port(self.host if self.host not in ("", "::") else "127.0.0.1")
                self.ui_port = free_port(self.host if self.host not in ("", "::") else "127.0.0.1")
                while self.ui_port == self.smtp_port:
                    self.ui_port = free_port()
            try:
                self._start_once(timeout)
                return self
            except StartError as e:
                err = self.stderr(since=self._stderr_offset)
                if "address already in use" in err.lower() or "EADDRINUSE" in err:
                    continue  # a port was taken between free_port() and the bind
                raise
        raise StartError("mtad could not get free ports after 5 attempts:\n" + self.stderr())

    def _start_once(self, timeout):
        self.write_config()
        env = dict(os.environ)
        env.update(self.env)
        self.starts += 1
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        self._stderr_offset = os.path.getsize(self.stderr_path)
        args = [MTAD, "-c", self.config_path]
        for o in self.overrides:
            args += ["-o", o]
        try:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=self.workdir)
        finally:
            out.close()
            err.close()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise StartError("mtad exited with %d during start-up; stderr:\n%s"
                                 % (rc, self.stderr()))
            try:
                with RawClient(self.smtp_port, host=self.host, timeout=t(2)) as c:
                    r = c.reply()
                    if r.code == 220:
                        try:
                            c.cmd("QUIT")
                        except (OSError, ConnectionClosed, AssertionError):
                            pass
                        return
                    last = "greeting %s" % r
            except (OSError, ConnectionClosed, AssertionError) as e:
                last = repr(e)
            time.sleep(0.05)
        self.kill()
        raise StartError("mtad did not answer 220 on %s:%s within %.0fs (%s); stderr:\n%s"
                         % (self.host, self.smtp_port, timeout, last, self.stderr()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def pid(self):
        return self.proc.pid

    def stop(self, timeout=None):
        """stop - SIGTERM and wait; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout if timeout is not None else t(15))
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        """kill - SIGKILL (crash simulation) and reap (bounded: a process that SIGKILL
        cannot end is stuck in the kernel, which the error shows)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(t(30))
            except subprocess.TimeoutExpired:
                raise AssertionError("mtad %d survives SIGKILL: %s" % (self.proc.pid,
                                                                       proc_where(self.proc.pid)))

    # -- observations --
    def stderr(self, since=0):
        """stderr - the daemon's standard error (from byte offset SINCE)."""
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def maillog(self):
        try:
            with open(self.maillog_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=None, count=1):
        """wait_log - wait until the maillog has COUNT lines matching regex PATTERN
        (the log writer is a thread: records appear a little after the event).
        Returns the matching lines; fails the test with the log on timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + (timeout if timeout is not None else t(5))
        while True:
            lines = [l for l in self.maillog().splitlines() if rx.search(l)]
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError("maillog: wanted %d line(s) matching %r, found %d; log:\n%s"
                                     % (count, pattern, len(lines), self.maillog()[-4000:]))
            time.sleep(0.05)

    def log_lines(self, pattern):
        rx = re.compile(pattern)
        return [l for l in self.maillog().splitlines() if rx.search(l)]

    def rss_kb(self):
        """rss_kb - the daemon's resident set size in kB (Linux /proc)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # -- the spool --
    def queue_dir(self):
        return os.path.join(self.data_volume, "queue")

    def spool_files(self):
        """spool_files - {queue ID: path} for every file under data_volume/queue/."""
        found = {}
        for root, _dirs, files in os.walk(self.queue_dir()):
            for fn in files:
                if "." in fn:
                    continue  # ID.st status files, editor/temp files
                if is_free_slot(os.path.join(root, fn), fn):
                    continue  # made ahead for a next message (docs/spool-format.md)
                found[fn] = os.path.join(root, fn)
        return found

    def queued_ids(self):
        return set(self.spool_files())

    def tmp_files(self):
        """Message leftovers in tmp/: everything but the pool files (docs/spool-format.md),
        which hold no queued mail and are reused for the next messages, and a status file
        being replaced (ID.st.tmp: a deferred message's retry time is written at each
        deferral)."""
        d = os.path.join(self.data_volume, "tmp")
        try:
            return [f for f in os.listdir(d)
                    if not re.fullmatch(r"P[0-9A-F]{8}|[0-9A-F]{16}\.st\.tmp", f)]
        except OSError:
            return []

    def spool_raw(self, qid):
        p = self.spool_files().get(qid)
        if p is None:
            raise AssertionError("queue ID %s not in the spool (have %s)"
                                 % (qid, sorted(self.queued_ids())))
        with open(p, "rb") as f:
            return f.read()

    def spool_message(self, qid):
        """spool_message - (envelope bytes, message bytes) of queued message QID,
        checked against docs/spool-format.md: the id line names QID and the size
        line equals the number of message bytes after the end line."""
        env, msg = split_spool_file(self.spool_raw(qid))
        fields = {}
        for line in env.decode("utf-8", "replace").splitlines()[1:]:
            k, _, v = line.partition(" ")
            fields.setdefault(k, v)
        if fields.get("id") != qid:
            raise AssertionError("spool file %s has id line %r" % (qid, fields.get("id")))
        if fields.get("size") != str(len(msg)):
            raise AssertionError("spool file %s: size %r but %d message bytes"
                                 % (qid, fields.get("size"), len(msg)))
        return env, msg

    def envelope(self, qid):
        """envelope - the decoded envelope of QID: {key: [values...]} (values %XX-decoded)."""
        env, _ = self.spool_message(qid)
        return parse_envelope(env)

    # -- clients --
    def client(self, source=None, timeout=None, greet=True):
        c = RawClient(self.smtp_port, host=self.host, source=source, timeout=timeout)
        if greet:
            c.greeting()
        return c

    def smtp(self, timeout=None):
        import smtplib
        return smtplib.SMTP(self.host, self.smtp_port, local_hostname="client.example",
                            timeout=timeout if timeout is not None else t(15))


def is_free_slot(path, name):
    """is_free_slot - a file in queue/ that holds no message of its name: a slot
    made ahead (zero bytes, or zeros), or a delivered message's file renamed to a
    new ID and waiting to be overwritten (its envelope names the old ID). Files a
    test plants in version 1 are never slots. A file gone since the directory was
    listed holds no message either (a rejected message's slot is unlinked by a worker)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if head == b"" or head[:1] == b"\0":
        return True
    if not head.startswith(b"MTA-QUEUE 2\n"):
        return False
    m = re.search(rb"\nid ([0-9A-F]{16})\n", head)
    return bool(m) and m.group(1).decode() != name


def split_spool_file(raw):
    """split_spool_file - a spool file is a text envelope (first line
    "MTA-QUEUE 1" or "MTA-QUEUE 2", last line "end"; docs/spool-format.md), then
    the message bytes; in version 2 "size" bytes of message, then the commit record
    and whatever the file held before. Returns (envelope, message); fails the test
    when it is unparseable."""
    if not raw.startswith(b"MTA-QUEUE "):
        raise AssertionError("spool file does not start with a version line: %r" % raw[:200])
    for marker in (b"\nend\n", b"\nend\r\n"):
        i = raw.find(marker)
        if i >= 0:
            env, rest = raw[:i + len(marker)], raw[i + len(marker):]
            m = re.search(rb"\nsize ([0-9]+)\n", env)
            if raw.startswith(b"MTA-QUEUE 2\n") and m:
                size = int(m.group(1))
                if not rest[size:].startswith(b"MTA-COMMIT "):
                    raise AssertionError("spool file has no commit record: %r" % rest[size:size + 100])
                rest = rest[:size]
            return env, rest
    raise AssertionError("spool file has no 'end' line: %r" % raw[:500])


def _pct_decode(tok):
    if tok == "-":
        return b""
    return re.sub(rb"%([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), tok.encode())


def parse_envelope(env):
    """parse_envelope - {key: [value bytes, ...]} from envelope text; each value is
    the rest of the line split into %XX-decoded tokens (a list of bytes)."""
    out = {}
    for line in env.decode("ascii", "replace").splitlines()[1:]:
        if line == "end":
            break
        parts = line.split(" ")
        out.setdefault(parts[0], []).append([_pct_decode(p) for p in parts[1:]])
    return out


def envelope_fields(env):
    """envelope_fields - the envelope's lines as a list of str (UTF-8)."""
    return env.decode("utf-8", "replace").splitlines()


def message_body(msg):
    """message_body - the body of MSG (bytes after the first empty line)."""
    i = msg.find(b"\r\n\r\n")
    if i >= 0:
        return msg[i + 4:]
    i = msg.find(b"\n\n")
    return msg[i + 2:] if i >= 0 else b""


def message_headers(msg):
    i = msg.find(b"\r\n\r\n")
    return msg[:i + 2] if i >= 0 else msg


# --------------------------------------------------------------------------
# test case base


class MtaTestCase(unittest.TestCase):
    """A TestCase with a private temp directory and daemons that are always stopped."""

    def setUp(self):
        if not os.path.exists(MTAD):
            self.skipTest("mtad not built (%s); set MTAD" % MTAD)
        self.tmp = tempfile.mkdtemp(prefix="mtatest-%s-" % self._testMethodName)
        os.chmod(self.tmp, 0o711)  # searchable by mail_owner (see MAIL_OWNER), not listable
        self.daemons = []
        self._problems_at_start = self._problems()
        self.addCleanup(self._cleanup_tmp)

    def _problems(self):
        """_problems - failures + errors recorded so far in this run's result."""
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return 0
        return len(getattr(result, "failures", [])) + len(getattr(result, "errors", []))

    def _failed(self):
        # (outcome.success is reset inside cleanups, so compare the result's counts)
        return self._problems() > self._problems_at_start

    def _cleanup_tmp(self):
        for d in self.daemons:
            d.kill()
        if self._failed():
            sys.stderr.write("\n[%s] temp dir %s\n" % (self.id(), self.tmp))
            for d in self.daemons:
                err = d.stderr()
                if err:
                    sys.stderr.write("[%s] %s stderr (tail):\n%s\n"
                                     % (self.id(), d.name, err[-3000:]))
            if os.environ.get("MTA_KEEP") == "1":
                return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def daemon(self, settings=None, overrides=None, env=None, start=True, name=None):
        """daemon - a new mtad for this test (started unless START is False);
        it is stopped with SIGTERM at the end and must exit 0."""
        d = Daemon(self.tmp, settings, overrides, env, name or "mtad%d" % len(self.daemons))
        self.daemons.append(d)
        self.addCleanup(self._stop_daemon, d)
        if start:
            try:
                d.start()
            except StartError as e:
                self.fail(str(e))
        return d

    def _stop_daemon(self, d):
        if not d.running():
            d._hold_sock.close()
            return
        rc = d.stop()
        self.assertEqual(rc, 0, "mtad did not exit 0 on SIGTERM (rc=%r); stderr:\n%s"
                         % (rc, d.stderr()[-3000:]))

    def assertReply(self, reply, code, text=None):
        """assertReply - REPLY has CODE and (if given) its last line starts with / matches TEXT."""
        self.assertEqual(reply.code, code, "reply %s, wanted %d %s" % (reply, code, text or ""))
        if text is not None:
            last = reply.lines[-1]
            if isinstance(text, re.Pattern):
                self.assertRegex(last, text, "reply %s" % reply)
            else:
                self.assertTrue(last.startswith(text), "reply %r, wanted %d %s" % (reply, code, text))

    def wait_queued(self, d, n, timeout=None):
        """wait_queued - wait until exactly N messages are in the spool; return their IDs."""
        deadline = time.monotonic() + (timeout if timeout is not None else t(5))
        while True:
            ids = d.queued_ids()
            if len(ids) >= n or time.monotonic() > deadline:
                return ids
            time.sleep(0.05)


def main():
    """main - run the file's tests. With MTA_REQUIRE_ALL=1 (scripts/test.sh, CI) a skipped
    test fails the run: there every tool is installed, so a skip would hide a missing one.
    A file still running after MTA_TEST_DUMP_AFTER seconds (default 290, just under ctest's
    300 s timeout, whose kill shows no stacks and drops the running test's name) prints
    every thread's stack and exits 1: a hang names the wait that hung."""
    faulthandler.dump_traceback_later(float(os.environ.get("MTA_TEST_DUMP_AFTER") or 290),
                                      exit=True)
    prog = unittest.main(verbosity=2, exit=False)
    result = prog.result
    if os.environ.get("MTA_REQUIRE_ALL") == "1" and result.skipped:
        for test, why in result.skipped:
            print("SKIPPED, which MTA_REQUIRE_ALL=1 forbids: %s: %s" % (test.id(), why))
        sys.exit(1)
    sys.exit(0 if result.wasSuccessful() else 1)
