"""
limit.py - the limit-relative table (`bench/run.sh limit`, also part of `all`):
in one run, for each session count, (a) mtad's durable intake with its spool on
tmpfs (the no-disk figure: the same binary, flushes cost nothing), (b) the cost of
one device flush on the data volume's disk (fdatasync of an overwritten 4 KiB
block, averaged), the limit they combine to (bench/README.md defines it), then
mtad and Postfix on the disk and their ratios. Relay rows (end to end, into
smtp-sink) when smtp-sink is installed.
Without Postfix installed the Postfix columns say n/a, and the load comes from
bench/smtp_load.c (built here) instead of smtp-source.
Not for: starting anything but loopback servers in temp dirs (bench.py's classes).
"""

import os
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FLUSHES = 300


def median_flush(writes):
    """median_flush - median seconds of the fdatasync after each (fd, data) of WRITES, the
    data written at offset 0 first. The median, so that a burst of someone else's I/O on a
    shared disk does not set the limit."""
    times = []
    for fd, data in writes:
        os.pwrite(fd, data, 0)
        t0 = time.perf_counter()
        os.fdatasync(fd)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def flush_probe(directory, n=FLUSHES):
    """flush_probe - median seconds of one fdatasync after overwriting the same 4 KiB block of
    a file in DIRECTORY (allocated and flushed first, so each flush is pure data: the cost a
    commit into a slot pays)."""
    path = os.path.join(directory, "flush-probe")
    block = b"\x5a" * 4096
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.pwrite(fd, block, 0)
        os.fsync(fd)
        return median_flush((fd, block[:-1] + bytes([i & 0xFF])) for i in range(n))
    finally:
        os.close(fd)
        os.unlink(path)


def commit_probe(directory, n=FLUSHES):
    """commit_probe - median seconds of one fdatasync after writing what a commit of a 4 KB
    message writes (4,691 bytes: envelope, message with its Received: header, commit record;
    two pages) into a different pre-written 8 KiB file each time, as mtad's slots are
    (spool_pool.c). Not the limit (the issue defines that with flush_probe); printed beside it
    to show what the commit's own write pattern costs on the same disk."""
    d = os.path.join(directory, "commit-probe")  # made once, left for bench.py to remove
    data = b"\x5a" * 4691
    fds = []
    try:
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            fd = os.open(os.path.join(d, "s%d" % i), os.O_RDWR | os.O_CREAT, 0o600)
            fds.append(fd)
            os.pwrite(fd, b"\0" * 8192, 0)
        os.sync()
        return median_flush((fd, data[:-1] + bytes([i & 0xFF])) for i, fd in enumerate(fds))
    finally:
        for fd in fds:
            os.close(fd)


def use_own_client(b, work):
    """use_own_client - when smtp-source is missing, build bench/smtp_load.c and make
    bench.smtp_source run it (same arguments that matter: sessions, count, size)."""
    if os.access(b.SMTP_SOURCE, os.X_OK):
        return "smtp-source"
    exe = os.path.join(work, "smtp_load")
    subprocess.run(["cc", "-O2", "-pthread", "-o", exe, os.path.join(HERE, "smtp_load.c")],
                   check=True)

    def smtp_load(port, sessions, count, size, limit):
        t0 = time.monotonic()
        try:
            p = subprocess.run([exe, "-s", str(sessions), "-m", str(count), "-l", str(size),
                                str(port)], capture_output=True, timeout=limit)
        except subprocess.TimeoutExpired:
            b.log("smtp_load did not finish within %ds" % limit)
            return time.monotonic() - t0, -1
        if p.returncode != 0:
            b.log("smtp_load exit %d: %s" % (p.returncode, p.stdout.decode().strip()))
        return time.monotonic() - t0, p.returncode
    b.smtp_source = smtp_load
    return "bench/smtp_load.c (smtp-source is not installed)"


def nodisk_parent(work):
    """nodisk_parent - a directory on tmpfs for the no-disk runs: /dev/shm, else a tmpfs
    mounted under WORK (unmounted at the end)."""
    shm = "/dev/shm"
    with open("/proc/mounts") as f:
        mounts = {ln.split()[1]: ln.split()[2] for ln in f}
    if mounts.get(shm) == "tmpfs" and os.access(shm, os.W_OK):
        d = tempfile.mkdtemp(prefix="mtabench-nodisk.", dir=shm)
    else:
        d = os.path.join(work, "nodisk")
        os.mkdir(d)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "tmpfs", d], check=True)
    os.chmod(d, 0o755)
    return d


def limit_of(n, nodisk_rate, t_flush):
    """limit_of - the limit at N sessions (bench/README.md): each session's message costs the
    no-disk time of one message at that concurrency plus one flush, the flush shared by the
    group it joins; never above the no-disk rate."""
    if nodisk_rate <= 0:
        return 0.0
    t_msg = n / nodisk_rate
    return min(nodisk_rate, n / (t_msg + t_flush))


def pct(a, b):
    return "%.0f%%" % (100.0 * a / b) if b else "-"


def one(b, cls, parent, kind, n, count, size, sink_port=None, settle=True):
    """one - one fresh server of CLS under PARENT, one load; its figures."""
    d = tempfile.mkdtemp(prefix="limit-%s-%s-%d." % (kind, cls.name.lower(), n), dir=parent)
    os.chmod(d, 0o755)
    port = sink_port if kind == "relay" else b.closed_port()
    if settle:
        b.settle()
    srv = cls(d, port).start()
    b.log("limit %s %s on %s: %d sessions, %d messages ..." % (kind, srv.name, parent, n, count))
    try:
        f = b.one_load(srv, n, count, size, wait_sent=count if kind == "relay" else None)
    finally:
        srv.stop()
    if not settle:
        shutil.rmtree(d, ignore_errors=True)  # tmpfs: nothing for the next run to pay
    # On the disk the directory stays until the whole bench ends (bench.py removes WORK):
    # deleting 20000 queue files here would make the next server pay for them (settle()).
    return f["e2e_rate" if kind == "relay" else "intake_rate"] if f["rc"] == 0 else 0.0


def bench_limit(b, work, sessions_list, count, size, out):
    """bench_limit - the table described at the top, appended to OUT."""
    client = use_own_client(b, work)
    have_postfix = os.access(b.POSTFIX, os.X_OK)
    kinds = ["intake"] + (["relay"] if os.access(b.SMTP_SINK, os.X_OK) else [])
    nodisk = nodisk_parent(work)
    try:
        rows = []
        for kind in kinds:
            for n in sessions_list:
                sink, sink_port = None, None
                if kind == "relay":
                    sink_port = b.free_port()
                    sink = subprocess.Popen([b.SMTP_SINK, "-u", "nobody",
                                             "127.0.0.1:%d" % sink_port, "1024"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    b.at_cleanup(lambda p=sink: b.kill_proc(p, 2))
                    if not b.wait_listen(sink_port):
                        raise RuntimeError("smtp-sink did not come up")
                nd = one(b, b.Mtad, nodisk, kind, n, count, size, sink_port, settle=False)
                tf = flush_probe(work)  # next to the disk runs it is the limit of
                tc = commit_probe(work)
                mt = one(b, b.Mtad, work, kind, n, count, size, sink_port)
                pf = (one(b, b.PostfixInstance, work, kind, n, count, size, sink_port)
                      if have_postfix else None)
                if sink:
                    b.kill_proc(sink, 2)
                rows.append((kind, n, nd, tf, tc, mt, pf))
    finally:
        if nodisk.startswith("/dev/shm/"):
            shutil.rmtree(nodisk, ignore_errors=True)
        else:
            subprocess.run(["umount", "-l", nodisk])
    lines = ["### Against the machine's limit (%d messages of %d bytes; load: %s)" % (
                 count, size, client), "",
             "One flush: fdatasync of an overwritten 4 KiB block on the disk of the work dir, "
             "the median of %d, measured right before each row's disk runs. No-disk: the same "
             "mtad with its spool on tmpfs. Limit at N sessions = min(no-disk rate, N / (N / "
             "no-disk rate + one flush)) (bench/README.md). Commit flush: the median fdatasync "
             "after writing what one commit writes (4,691 bytes) into a different pre-written "
             "file each time, as into mtad's slots; limit' is the limit computed with it "
             "(shown, not the target)." % FLUSHES, "",
             "| kind | sessions | no-disk msg/s | flush us | limit msg/s | commit flush us | "
             "limit' msg/s | mtad msg/s | mtad / limit | mtad / limit' | Postfix msg/s | "
             "Postfix / limit | mtad / Postfix |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, n, nd, tf, tc, mt, pf in rows:
        lim = limit_of(n, nd, tf)
        lim2 = limit_of(n, nd, tc)
        lines.append("| %s | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %s | %s | %s | %s | "
                     "%s |" % (
            kind, n, nd, tf * 1e6, lim, tc * 1e6, lim2, mt, pct(mt, lim), pct(mt, lim2),
            "%.0f" % pf if pf is not None else "n/a",
            pct(pf, lim) if pf is not None else "n/a",
            b.ratio(mt, pf) if pf else "n/a"))
    out.extend(lines + [""])
    for ln in lines:
        b.log(ln)
