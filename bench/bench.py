#!/usr/bin/env python3
"""
bench.py - the benchmark driver behind bench/run.sh: runs mtad and a private
Postfix instance side by side on loopback (free ports, a temp directory on the
real disk) and drives both with Postfix's smtp-source; prints a side-by-side
table and appends it to bench/results.md.
Not for: installing or building anything (run.sh does that), nor any address
other than 127.0.0.1 (every load here is loopback only and bounded in count
and time).

Usage: bench.py [intake|relay|idle|tls|dkim|limit|all] [-m MESSAGES] [-s 1,10,50] [-l SIZE]
       (dkim: content.py, DKIM signing and one milter; its sessions: --content-sessions)
Environment: MTAD (the daemon, default build/mtad), BENCH_TMP (parent of the
temp dir, default /var/tmp), BENCH_KEEP=1 (keep the temp dir).
Standard library only; must run as root (Postfix's master needs it).
"""

import argparse
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
SENDER = "bench@example.com"
RCPT = "rcpt@example.net"

# --------------------------------------------------------------------------
# cleanup: everything we start is registered here and undone on any exit


_cleanups = []


def at_cleanup(fn):
    """at_cleanup - run FN (newest first) when the benchmark ends, however it ends."""
    _cleanups.append(fn)
    return fn


def run_cleanups():
    """run_cleanups - stop every process we started and remove the temp dir."""
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # cleanup must go on whatever failed
            print("bench: cleanup: %s" % e, file=sys.stderr)


_interrupted = False


def _on_signal(signum, frame):
    """_on_signal - the first SIGINT/SIGTERM stops the run; later ones (Ctrl-C
    reaches us from the terminal and again from run.sh) must not break the cleanup."""
    global _interrupted
    if _interrupted:
        return
    _interrupted = True
    raise KeyboardInterrupt("signal %d" % signum)


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# /proc helpers


def proc_stat(pid):
    """proc_stat - (ppid, utime+stime, cutime+cstime) in clock ticks, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # fields after the comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def proc_tree(root):
    """proc_tree - ROOT and all its descendants (pids)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_stat(int(d))
        if st:
            children.setdefault(st[0], []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu(root):
    """tree_cpu - CPU seconds used by ROOT's tree: every live process's own
    utime+stime plus ROOT's cutime+cstime (the children it has reaped)."""
    total = 0
    for p in proc_tree(root):
        st = proc_stat(p)
        if st:
            total += st[1]
            if p == root:
                total += st[2]
    return total / CLK_TCK


def mem_kb(pid):
    """mem_kb - (Rss, Pss) of PID in kB from smaps_rollup; (0, 0) if gone."""
    rss = pss = 0
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def tree_mem(root):
    """tree_mem - (sum Rss, sum Pss, process count) of ROOT's tree in kB."""
    rss = pss = n = 0
    for p in proc_tree(root):
        r, s = mem_kb(p)
        if r:
            rss += r
            pss += s
            n += 1
    return rss, pss, n


class MemSampler(threading.Thread):
    """Samples a process tree's memory every INTERVAL seconds and keeps the peak
    of the summed PSS (and RSS, and the most processes seen)."""

    def __init__(self, root, interval=0.5):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self):
        rss, pss, n = tree_mem(self.root)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_procs = max(self.peak_procs, n)

    def stop(self):
        self._halt.set()
        self.join(5)
        self.sample()


def wait_quiet(root, limit=60.0):
    """wait_quiet - wait until ROOT's tree uses < 20 ms CPU in one second (the
    server has finished the work the load left behind), at most LIMIT seconds."""
    deadline = time.monotonic() + limit
    last = tree_cpu(root)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = tree_cpu(root)
        if now - last < 0.02:
            return True
        last = now
    return False


# --------------------------------------------------------------------------
# ports, processes, logs


def free_port():
    """free_port - a TCP port on 127.0.0.1 the kernel just gave us (then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port():
    """closed_port - a port where nothing listens, so connects are refused at once."""
    return free_port()


def wait_listen(port, limit=15.0):
    """wait_listen - True once something accepts on 127.0.0.1:PORT (bounded)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def raise_nofile(n=65536):
    """raise_nofile - raise RLIMIT_NOFILE to N for this process (root may)."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def kill_proc(p, grace=10.0):
    """kill_proc - SIGTERM a Popen, SIGKILL after GRACE seconds."""
    if p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


class LogCounter:
    """Counts lines containing NEEDLE in a growing log file, reading only new bytes."""

    def __init__(self, path, needle):
        self.path, self.needle, self.pos, self.count, self.rest = path, needle.encode(), 0, 0, b""

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return self.count
        self.pos += len(data)
        data = self.rest + data
        lines = data.split(b"\n")
        self.rest = lines.pop()
        self.count += sum(1 for ln in lines if self.needle in ln)
        return self.count


def smtp_source_args(exe, port, sessions, count, size):
    """smtp_source_args - the command line of smtp-source EXE as the bench runs it."""
    return [exe, "-4", "-d", "-s", str(sessions), "-m", str(count), "-l", str(size),
            "-f", SENDER, "-t", RCPT, "-M", "client.example", "127.0.0.1:%d" % port]


def smtp_source(port, sessions, count, size, limit):
    """smtp_source - run Postfix's smtp-source (-d: several messages per
    connection) against 127.0.0.1:PORT; return (wall seconds, exit code)."""
    args = smtp_source_args(SMTP_SOURCE, port, sessions, count, size)
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=raise_nofile)
    at_cleanup(lambda: kill_proc(p, 1))
    try:
        _, err = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        kill_proc(p, 1)
        log("smtp-source did not finish within %ds: killed" % limit)
        return time.monotonic() - t0, -1
    el = time.monotonic() - t0
    if p.returncode != 0:
        log("smtp-source exit %d: %s" % (p.returncode, err.decode(errors="replace").strip()[-500:]))
    return el, p.returncode


# --------------------------------------------------------------------------
# the servers


class PostfixInstance:
    """A private Postfix: its own config dir, queue and data dirs under WORK,
    smtpd on 127.0.0.1:smtp_port, started with `postfix -c DIR start`."""

    name = "Postfix"

    def __init__(self, work, relay_port, proclimit=100, connlimit=50, smtps_port=None, tls=None):
        self.work = work
        self.conf = os.path.join(work, "conf")
        self.maillog = os.path.join(work, "maillog")
        self.relay_port = relay_port
        self.smtp_port = free_port()
        self.smtps_port = smtps_port
        self.proclimit, self.connlimit, self.tls = proclimit, connlimit, tls
        self.master = None

    def write_config(self):
        for d in (self.conf, os.path.join(self.work, "queue")):
            os.makedirs(d, exist_ok=True)
        data = os.path.join(self.work, "data")
        os.makedirs(data, exist_ok=True)
        shutil.chown(data, "postfix")
        extra = ""
        smtps_line = ""
        if self.tls:
            key, cert = self.tls
            extra = ("smtpd_tls_security_level = may\nsmtpd_tls_key_file = %s\n"
                     "smtpd_tls_cert_file = %s\nsmtpd_tls_protocols = >=TLSv1.2\n" % (key, cert))
            if self.smtps_port:
                smtps_line = ("127.0.0.1:%d inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes"
                              % self.smtps_port)
        subst = {"@WORK@": self.work, "@RELAYHOST@": "[127.0.0.1]:%d" % self.relay_port,
                 "@PROCLIMIT@": str(self.proclimit), "@CONNLIMIT@": str(self.connlimit),
                 "@EXTRA@": extra, "@SMTPPORT@": str(self.smtp_port), "@SMTPS_LINE@": smtps_line}
        for name in ("main.cf", "master.cf"):
            with open(os.path.join(HERE, "postfix", name + ".in")) as f:
                text = f.read()
            for k, v in subst.items():
                text = text.replace(k, v)
            with open(os.path.join(self.conf, name), "w") as f:
                f.write(text)

    def start(self):
        self.write_config()
        at_cleanup(self.stop)
        r = subprocess.run([POSTFIX, "-c", self.conf, "start"], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("postfix start failed (%d): %s %s\n%s" % (
                r.returncode, r.stdout, r.stderr, self.log_tail()))
        pidfile = os.path.join(self.work, "queue", "pid", "master.pid")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.master is None:
            try:
                with open(pidfile) as f:
                    self.master = int(f.read().strip())
            except (OSError, ValueError):
                time.sleep(0.1)
        if self.master is None or not wait_listen(self.smtp_port):
            raise RuntimeError("postfix did not come up\n" + self.log_tail())
        return self

    def pid(self):
        return self.master

    def log_tail(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return "".join(f.readlines()[-10:])
        except OSError:
            return ""

    def stop(self):
        if self.master is None:
            return
        subprocess.run([POSTFIX, "-c", self.conf, "stop"], capture_output=True, timeout=60)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and os.path.exists("/proc/%d" % self.master):
            time.sleep(0.1)
        if os.path.exists("/proc/%d" % self.master):
            for p in reversed(proc_tree(self.master)):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        self.master = None


class Mtad:
    """One mtad process with its own config file and data volume under WORK."""

    name = "mtad"

    def __init__(self, work, relay_port, settings=None, smtps_port=None):
        self.work = work
        self.cf = os.path.join(work, "mtad.cf")
        self.maillog = os.path.join(work, "maillog")
        self.relay_port = relay_port
        self.smtp_port = free_port()
        self.ui_port = free_port()
        self.smtps_port = smtps_port
        self.settings = settings or {}
        self.proc = None

    def start(self):
        os.makedirs(self.work, exist_ok=True)
        s = {"hostname": "mta-bench.localdomain", "data_volume": os.path.join(self.work, "data"),
             "in_address": "127.0.0.1", "smtp_port": self.smtp_port, "ui_port": self.ui_port,
             "smtpd_trusted_networks": "127.0.0.0/8", "maillog_file": self.maillog,
             "smart_relay": "[127.0.0.1]:%d" % self.relay_port, "logs_enabled": "no",
             "ssl_disabled": "yes"}
        if self.smtps_port:
            s["smtps_port"] = self.smtps_port
        s.update(self.settings)
        with open(self.cf, "w") as f:
            for k, v in s.items():
                f.write("%s = %s\n" % (k, v))
        self.err = open(os.path.join(self.work, "mtad.stderr"), "wb")
        self.proc = subprocess.Popen([MTAD, "-c", self.cf], stdout=self.err, stderr=self.err,
                                     cwd=self.work, preexec_fn=raise_nofile)
        at_cleanup(self.stop)
        if not wait_listen(self.smtp_port) or self.proc.poll() is not None:
            raise RuntimeError("mtad did not come up:\n" + self.stderr_tail())
        return self

    def pid(self):
        return self.proc.pid

    def stderr_tail(self):
        try:
            with open(os.path.join(self.work, "mtad.stderr"), errors="replace") as f:
                return "".join(f.readlines()[-10:])
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            kill_proc(self.proc, 20)
            self.proc = None
            self.err.close()


# --------------------------------------------------------------------------
# the benchmarks


def mb(kb):
    return "%.1f" % (kb / 1024.0)


def ratio(a, b):
    return "%.1fx" % (a / b) if b else "-"


def one_load(server, sessions, count, size, wait_sent=None, limit=None):
    """one_load - drive SERVER with smtp-source; return a dict of figures.
    With WAIT_SENT, also wait (bounded) until its maillog has that many
    `status=sent` lines and report the end-to-end rate."""
    limit = limit or max(120, count // 20)
    root = server.pid()
    sent = LogCounter(server.maillog, "status=sent") if wait_sent else None
    time.sleep(0.5)
    cpu0 = tree_cpu(root)
    sampler = MemSampler(root)
    sampler.start()
    t0 = time.monotonic()
    el, rc = smtp_source(server.smtp_port, sessions, count, size, limit)
    res = {"rc": rc, "intake_s": el, "intake_rate": count / el if el > 0 else 0}
    if sent:
        deadline = t0 + limit
        last, last_t = -1, time.monotonic()
        while sent.poll() < wait_sent and time.monotonic() < deadline:
            if sent.count != last:
                last, last_t = sent.count, time.monotonic()
            elif time.monotonic() - last_t > 30:
                break  # no delivery for 30 s: the server is not relaying
            time.sleep(0.1)
        t_end = time.monotonic()
        res["sent"] = sent.count
        res["e2e_s"] = t_end - t0
        res["e2e_rate"] = sent.count / (t_end - t0)
        if sent.count < wait_sent:
            log("%s: only %d of %d sent after %.0fs (stopped waiting: limit %ds or 30 s without progress)"
                % (server.name, sent.count, wait_sent, t_end - t0, limit))
    quiet = wait_quiet(root)
    sampler.stop()
    res["cpu"] = tree_cpu(root) - cpu0
    res["quiet"] = quiet
    res["peak_pss_kb"] = sampler.peak_pss
    res["peak_rss_kb"] = sampler.peak_rss
    res["procs"] = sampler.peak_procs
    return res


SETTLE = 61


def settle():
    """settle - flush the page cache and wait SETTLE seconds before a load, so that no
    server pays for the files an earlier run (or the other server) deleted. On ext4
    without a journal (this VM's disk) a new inode is not taken from those freed in the
    last 60 s (300 s while their inode table block is unwritten): creating a file right
    after mass deletions scans past all of them, measured 2,000 creates/s against 40,000/s
    settled. Postfix's relay run deletes 20000 queue files; without this the next
    server's intake would pay for them."""
    if SETTLE <= 0:
        return
    log("settling: sync, then %d s so that no earlier deletion weighs on this run" % SETTLE)
    os.sync()
    time.sleep(SETTLE)


def bench_intake_or_relay(work, kind, sessions_list, count, size, out):
    """bench_intake_or_relay - KIND 'intake' (deliveries go to a closed port and
    defer) or 'relay' (deliveries go to smtp-sink): one fresh Postfix and one
    fresh mtad per session count, run one after the other."""
    rows = []
    for n in sessions_list:
        figures = {}
        for cls in (PostfixInstance, Mtad):
            d = tempfile.mkdtemp(prefix="%s-%s-%d." % (kind, cls.name.lower(), n), dir=work)
            os.chmod(d, 0o755)
            sink = None
            if kind == "relay":
                port = free_port()
                sink = subprocess.Popen([SMTP_SINK, "-u", "nobody", "127.0.0.1:%d" % port, "1024"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                at_cleanup(lambda p=sink: kill_proc(p, 2))
                if not wait_listen(port):
                    raise RuntimeError("smtp-sink did not come up")
            else:
                port = closed_port()
            settle()
            srv = cls(d, port).start()
            log("%s %s: %d sessions, %d messages of %d bytes ..." % (kind, srv.name, n, count, size))
            figures[srv.name] = one_load(srv, n, count, size, wait_sent=count if kind == "relay" else None)
            srv.stop()
            if sink:
                kill_proc(sink, 2)
            log("  %s" % {k: (round(v, 2) if isinstance(v, float) else v) for k, v in figures[srv.name].items()})
        rows.append((n, figures["Postfix"], figures["mtad"]))
    rate = "e2e_rate" if kind == "relay" else "intake_rate"
    title = ("Relay end to end: smtp-source -> server -> smtp-sink, time until the server logged "
             "status=sent for every message" if kind == "relay" else
             "Durable intake: smtp-source -d into the server, deliveries deferred (closed relay port)")
    lines = ["### %s (%d messages of %d bytes)" % (title, count, size), "",
             "| sessions | Postfix msg/s | mtad msg/s | ratio | Postfix CPU s | mtad CPU s | "
             "Postfix peak PSS MB (procs) | mtad peak RSS MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, pf, mt in rows:
        lines.append("| %d | %.0f | %.0f | %s | %.2f | %.2f | %s (%d) | %s |" % (
            n, pf[rate], mt[rate], ratio(mt[rate], pf[rate]), pf["cpu"], mt["cpu"],
            mb(pf["peak_pss_kb"]), pf["procs"], mb(mt["peak_rss_kb"])))
        for name, f in (("Postfix", pf), ("mtad", mt)):
            if f["rc"] != 0 or (kind == "relay" and f.get("sent", 0) < count):
                lines.append("|  | (%s: smtp-source exit %s, %s of %d sent) |||||||" % (
                    name, f["rc"], f.get("sent", "-"), count))
    out.extend(lines + [""])


def open_idle(port, n, limit=120.0):
    """open_idle - open N SMTP sessions to 127.0.0.1:PORT and read each 220
    greeting; return (list of sockets, how many greeted). Bounded by LIMIT."""
    sel = selectors.DefaultSelector()
    socks, greeted, pending = [], 0, 0
    deadline = time.monotonic() + limit
    want = {}
    i = 0
    while (i < n or pending) and time.monotonic() < deadline:
        # keep at most 500 connects/greetings in flight so the listen queue is not flooded
        while i < n and pending < 500:
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect_ex(("127.0.0.1", port))
            except OSError:
                s.close()
                i += 1
                continue
            sel.register(s, selectors.EVENT_READ)
            want[s] = b""
            socks.append(s)
            pending += 1
            i += 1
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(512)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                pending -= 1
                continue
            want[s] += data
            if b"\n" in want[s]:
                sel.unregister(s)
                pending -= 1
                if want[s].startswith(b"220"):
                    greeted += 1
    sel.close()
    return socks, greeted


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def bench_idle(work, sessions, count, size, out):
    """bench_idle - mtad's RSS idle, with SESSIONS idle SMTP sessions (greeted,
    then silent) and at 50 busy sessions; Postfix's PSS idle and at its most
    (100 sessions, default_process_limit) for reference."""
    raise_nofile(max(65536, sessions * 2 + 1000))
    d = tempfile.mkdtemp(prefix="idle-mtad.", dir=work)
    srv = Mtad(d, closed_port(), settings={"smtpd_client_connection_count_limit": 0,
                                           "smtpd_session_limit": max(10000, sessions + 100)}).start()
    time.sleep(1.0)
    pid = srv.pid()
    idle0 = rss_kb(pid)
    t0 = time.monotonic()
    socks, greeted = open_idle(srv.smtp_port, sessions)
    t_open = time.monotonic() - t0
    time.sleep(2.0)
    idle_n = rss_kb(pid)
    cpu_idle = tree_cpu(pid)
    time.sleep(5.0)
    cpu_idle = tree_cpu(pid) - cpu_idle
    for s in socks:
        s.close()
    log("idle mtad: %d of %d sessions greeted in %.1fs; RSS %s MB -> %s MB" % (
        greeted, sessions, t_open, mb(idle0), mb(idle_n)))
    srv.stop()
    # a fresh daemon for the busy figure: the idle run's freed memory may stay mapped
    d = tempfile.mkdtemp(prefix="busy-mtad.", dir=work)
    srv = Mtad(d, closed_port()).start()
    busy = one_load(srv, 50, count, size)
    srv.stop()

    d = tempfile.mkdtemp(prefix="idle-postfix.", dir=work)
    os.chmod(d, 0o755)
    pf = PostfixInstance(d, closed_port(), connlimit=0).start()
    time.sleep(1.0)
    pf_idle = tree_mem(pf.pid())
    psocks, pgreeted = open_idle(pf.smtp_port, 100, limit=60)
    time.sleep(2.0)
    pf_100 = tree_mem(pf.pid())
    for s in psocks:
        s.close()
    pf.stop()
    out.extend([
        "### Memory: idle, %d idle sessions, 50 busy sessions" % sessions, "",
        "| figure | mtad RSS MB | Postfix PSS MB (procs) |", "|---|---:|---:|",
        "| no session | %s | %s (%d) |" % (mb(idle0), mb(pf_idle[1]), pf_idle[2]),
        "| %d idle sessions (mtad greeted %d in %.1f s; idle CPU %.2f s over 5 s) | %s | - (max 100 sessions) |" % (
            sessions, greeted, t_open, cpu_idle, mb(idle_n)),
        "| 100 idle sessions (Postfix greeted %d) | - | %s (%d) |" % (pgreeted, mb(pf_100[1]), pf_100[2]),
        "| 50 busy sessions (peak during %d messages, %.0f msg/s) | %s | see intake table |" % (
            count, busy["intake_rate"], mb(busy["peak_rss_kb"])),
        ""])


# -- TLS --------------------------------------------------------------------


def make_cert(work):
    """make_cert - a self-signed RSA 2048 key and certificate made with the openssl CLI."""
    key, cert = os.path.join(work, "server.key"), os.path.join(work, "server.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=bench.localdomain", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return key, cert


def tls_load(mode, port, sessions, seconds, count):
    """tls_load - run tlsload.py; return its result line as a dict."""
    args = [sys.executable, os.path.join(HERE, "tlsload.py"), mode, str(port), str(sessions),
            str(seconds), str(count), str(4096)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    res = {}
    for tok in r.stdout.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            res[k] = float(v)
    if r.returncode != 0:
        log("tlsload %s exit %d: %s" % (mode, r.returncode, r.stderr.strip()[-500:]))
    return res


def mtad_offers_starttls(srv):
    try:
        with socket.create_connection(("127.0.0.1", srv.smtp_port), timeout=10) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"EHLO client.example\r\n")
            lines = []
            for _ in range(50):
                ln = f.readline()
                lines.append(ln)
                if ln[3:4] != b"-":
                    break
            return any(b"STARTTLS" in ln.upper() for ln in lines)
    except OSError:
        return False


def bench_tls(work, sessions, count, out):
    """bench_tls - SMTPS handshakes/s and STARTTLS msg/s, both servers, same
    RSA 2048 key and certificate, TLS 1.2+ (the client offers 1.2 and 1.3)."""
    d = tempfile.mkdtemp(prefix="tls-mtad.", dir=work)
    key, cert = make_cert(work)
    keyvol = os.path.join(d, "keys")
    os.makedirs(keyvol)
    shutil.copy(key, keyvol)
    shutil.copy(cert, keyvol)
    os.chmod(os.path.join(keyvol, "server.key"), 0o600)
    smtps = free_port()
    try:
        srv = Mtad(d, closed_port(), smtps_port=smtps, settings={
            "ssl_disabled": "no", "key_volume": keyvol, "ssl_key_file": "server.key",
            "ssl_cert_file": "server.pem"}).start()
        ok = mtad_offers_starttls(srv) and wait_listen(smtps, 3)
    except RuntimeError as e:
        srv, ok = None, False
        log("mtad with ssl_disabled = no did not start: %s" % str(e).strip()[-300:])
    if not ok:
        msg = ("### TLS\n\nskipped: this mtad does not serve TLS yet (ssl_disabled = no did not "
               "give STARTTLS on smtp_port and SMTPS on smtps_port).\n")
        log(msg.splitlines()[-1])
        out.append(msg)
        if srv:
            srv.stop()
        return
    figures = {}
    mtad_srv = srv
    for name in ("Postfix", "mtad"):
        srv = mtad_srv
        if name == "Postfix":
            pd = tempfile.mkdtemp(prefix="tls-postfix.", dir=work)
            os.chmod(pd, 0o755)
            pkey, pcert = os.path.join(pd, "server.key"), os.path.join(pd, "server.pem")
            shutil.copy(key, pkey)
            shutil.copy(cert, pcert)
            srv = PostfixInstance(pd, closed_port(), smtps_port=free_port(), tls=(pkey, pcert)).start()
            if not wait_listen(srv.smtps_port):
                raise RuntimeError("postfix smtps did not come up")
        root = srv.pid()
        cpu0 = tree_cpu(root)
        hs = tls_load("handshake", srv.smtps_port, sessions, 20, 0)
        cpu1 = tree_cpu(root)
        st = tls_load("starttls", srv.smtp_port, sessions, 120, count)
        wait_quiet(root)
        figures[name] = (hs, st, cpu1 - cpu0, tree_cpu(root) - cpu1)
        srv.stop()
        log("tls %s: %s" % (name, figures[name]))
    pf, mt = figures["Postfix"], figures["mtad"]
    out.extend([
        "### TLS (%d client processes, RSA 2048, TLS 1.2/1.3 as negotiated)" % sessions, "",
        "| figure | Postfix | mtad | ratio |", "|---|---:|---:|---:|",
        "| SMTPS handshakes/s (connect, TLS, greeting, QUIT) | %.0f | %.0f | %s |" % (
            pf[0].get("rate", 0), mt[0].get("rate", 0), ratio(mt[0].get("rate", 0), pf[0].get("rate", 0))),
        "| server CPU s during the handshake run | %.2f | %.2f | |" % (pf[2], mt[2]),
        "| STARTTLS msg/s (%d messages, one session per client, -d style) | %.0f | %.0f | %s |" % (
            count, pf[1].get("rate", 0), mt[1].get("rate", 0), ratio(mt[1].get("rate", 0), pf[1].get("rate", 0))),
        "| server CPU s during the STARTTLS run | %.2f | %.2f | |" % (pf[3], mt[3]),
        ""])


# --------------------------------------------------------------------------


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        pfv = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pfv = "?"
    return "%s, %d cores (%s), kernel %s, Postfix %s" % (
        platform.node(), os.cpu_count() or 0, cpu, platform.release(), pfv)


def main():
    global SETTLE
    ap = argparse.ArgumentParser(description="mtad vs Postfix benchmark (loopback only)")
    ap.add_argument("what", nargs="?", default="all",
                    choices=["intake", "relay", "idle", "tls", "dkim", "limit", "all"])
    ap.add_argument("--content-sessions", default="1,10",
                    help="session counts of the dkim (content pipeline) runs")
    ap.add_argument("-m", "--messages", type=int, default=20000)
    ap.add_argument("-s", "--sessions", default="1,10,50")
    ap.add_argument("-l", "--size", type=int, default=4096)
    ap.add_argument("--idle-sessions", type=int, default=10000)
    ap.add_argument("--results", default=os.path.join(HERE, "results.md"))
    ap.add_argument("--settle", type=int, default=SETTLE,
                    help="seconds to wait after sync before each intake/relay load (0: none)")
    a = ap.parse_args()
    SETTLE = a.settle
    if os.geteuid() != 0:
        sys.exit("bench: must run as root (Postfix's master)")
    global MTAD
    MTAD = os.environ.get("MTAD") or os.path.join(SRCDIR, "build", "mtad")
    # the dkim runs do what they can without Postfix (content.py): only mtad is needed there
    # limit.py too: without Postfix its columns say n/a and bench/smtp_load.c makes the load
    for p in (MTAD,) if a.what in ("dkim", "limit") else (MTAD, SMTP_SOURCE, SMTP_SINK, POSTFIX):
        if not os.access(p, os.X_OK):
            sys.exit("bench: missing %s (run bench/run.sh, which installs and builds)" % p)
    sessions = [int(x) for x in a.sessions.split(",") if x.strip()]
    # run.sh starts us in the background, where SIGINT is ignored: set it anew.
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    parent = os.environ.get("BENCH_TMP", "/var/tmp")
    work = tempfile.mkdtemp(prefix="mtabench.", dir=parent)
    os.chmod(work, 0o755)  # the postfix user must reach its queue below it
    if os.environ.get("BENCH_KEEP") != "1":
        at_cleanup(lambda: shutil.rmtree(work, ignore_errors=True))
    else:
        at_cleanup(lambda: log("kept %s" % work))
    with open("/proc/mounts") as f:
        fstypes = {ln.split()[1]: ln.split()[2] for ln in f}
    mp = work
    while mp not in fstypes and mp != "/":
        mp = os.path.dirname(mp)
    if fstypes.get(mp) in ("tmpfs", "ramfs"):
        log("WARNING: %s is on %s: fsync costs nothing there; set BENCH_TMP to a real disk" % (work, fstypes[mp]))
    out = ["## %s: `bench/run.sh %s` -m %d -s %s" % (time.strftime("%Y-%m-%d %H:%M %Z"), a.what,
                                                      a.messages, a.sessions),
           "", "Machine: %s; mtad: %s; temp dir on %s (%s); settle %d s before each intake/relay load" % (
               machine(), MTAD, mp, fstypes.get(mp, "?"), SETTLE), ""]
    try:
        if a.what in ("intake", "all"):
            bench_intake_or_relay(work, "intake", sessions, a.messages, a.size, out)
        if a.what in ("relay", "all"):
            bench_intake_or_relay(work, "relay", sessions, a.messages, a.size, out)
        if a.what in ("idle", "all"):
            bench_idle(work, a.idle_sessions, min(a.messages, 5000), a.size, out)
        if a.what in ("tls", "all"):
            bench_tls(work, 50, min(a.messages, 5000), out)
        if a.what in ("limit", "all"):
            import limit
            limit.bench_limit(sys.modules[__name__], work, sessions, a.messages, a.size, out)
        if a.what in ("dkim", "all"):
            import content
            content.bench_content(sys.modules[__name__], work,
                                  [int(x) for x in a.content_sessions.split(",") if x.strip()],
                                  a.messages, a.size, out)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        run_cleanups()
        sys.exit(130)
    finally:
        run_cleanups()
    text = "\n".join(out) + "\n"
    print(text)
    with open(a.results, "a") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
