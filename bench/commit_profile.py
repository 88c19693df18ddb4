#!/usr/bin/env python3
"""
commit_profile.py - where the time of mtad's durable intake goes, per session count:
the same mtad (deliveries deferred to a refused port, as in the limit table) loaded by
bench/smtp_load.c with its spool on the disk and on tmpfs, and for each run

- msg/s, and the commit groups (mta_spool_flushes_total: messages per flush);
- the device's writes and flushes per message and the mean time of a device flush,
  from /proc/diskstats of the disk that holds BENCH_TMP (what the block layer saw);
- the machine's CPU split (user / sys / idle / iowait / softirq) over the load, from
  /proc/stat, and mtad's CPU per message by thread name (loop, committer, spool and
  scheduler workers), from /proc/PID/task, with the time each thread waited, runnable,
  for a CPU (its schedstat run delay: what 2 busy cores cost a thread that was woken);
- the mean commit latency, from the end of data to the 250, split as mtad's counters
  mta_spool_commit_{wait,write,flush,reply}_seconds_total split it: the wait for the committer,
  the write and the flush of the commit's group, the hand-back to the loop;
- with --perf FILE, a system-wide profile of each disk run (FILE.N for N sessions);
- with --strace, the committer thread's fdatasync times (p50 / p90 / p99 / max and
  their sum against the run's wall time; strace slows every call it sees, so the rate
  of such a run is not comparable).

Usage (root, Debian 12, the machine otherwise idle; no Postfix needed):
    MTAD=build-rel/mtad python3 bench/commit_profile.py [-s 1,10,50] [-m 6000] [--strace]
        [--smtp-source /usr/sbin/smtp-source]   (the limit table's client and arguments)
Old runs' files are deleted only at the end and a new spool is made for every run,
so that no run pays for another's deletions (bench.py's settle()); with BENCH_KEEP=1
not even then, so that back-to-back invocations (old and new binary) compare fairly:
remove BENCH_TMP/mtabench-profile.* yourself, and wait a few minutes after a mass
deletion before measuring.
Not for: CI (figures, not tests); anything but loopback.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench as b  # noqa: E402  (Mtad, free_port, closed_port, cleanups)


def disk_of(path):
    """disk_of - the /proc/diskstats name of the block device that holds PATH."""
    dev = os.stat(path).st_dev
    want = "%d:%d" % (os.major(dev), os.minor(dev))
    for name in os.listdir("/sys/class/block"):
        try:
            with open("/sys/class/block/%s/dev" % name) as f:
                if f.read().strip() == want:
                    return name
        except OSError:
            pass
    return None


def diskstats(name):
    """diskstats - (writes completed, flushes completed, ms spent flushing) of NAME."""
    if not name:
        return (0, 0, 0)
    with open("/proc/diskstats") as f:
        for ln in f:
            p = ln.split()
            if p[2] == name:
                return (int(p[7]), int(p[18]) if len(p) > 19 else 0,
                        int(p[19]) if len(p) > 19 else 0)
    return (0, 0, 0)


def cpu_times():
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def thread_ticks(pid):
    """thread_ticks - {thread name: (utime + stime in clock ticks, ns spent runnable but
    waiting for a CPU)} of process PID; the second from schedstat (0 without schedstats)."""
    out = {}
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
                comm = f.read().strip()
            with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                    delay = int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                delay = 0
            ticks, waited = out.get(comm, (0, 0))
            out[comm] = (ticks + int(fields[11]) + int(fields[12]), waited + delay)
        except OSError:
            pass
    return out


def metric(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^%s ([0-9.]+)" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else 0


def committer_tid(pid):
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
            if f.read().strip() == "spool-commit":
                return int(t)
    return None


def fdatasync_times(path):
    ts = []
    with open(path) as f:
        for ln in f:
            m = re.match(r"fdatasync\(.*<([\d.]+)>$", ln.strip())
            if m:
                ts.append(float(m.group(1)))
    return sorted(ts)


# the commits, then the parts of their latency (microseconds summed over the commits)
LATENCY = ["mta_spool_commits_total"] + ["mta_spool_commit_%s_seconds_total" % p
                                         for p in ("wait", "write", "flush", "reply")]


def one(parent, where, sessions, count, size, load, trace, perf):
    d = tempfile.mkdtemp(prefix="profile-%s-%d." % (where, sessions), dir=parent)
    os.chmod(d, 0o755)
    srv = b.Mtad(d, b.closed_port()).start()
    pid = srv.pid()
    time.sleep(1)  # the first slots are made
    disk = disk_of(d)
    st = None
    if trace:
        st = subprocess.Popen(["strace", "-T", "-e", "trace=fdatasync", "-o",
                               os.path.join(d, "strace.txt"), "-p", str(committer_tid(pid))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    f0, d0, c0, k0 = (metric(srv.ui_port, "mta_spool_flushes_total"), diskstats(disk),
                      cpu_times(), thread_ticks(pid))
    l0 = [metric(srv.ui_port, n) for n in LATENCY]
    t0 = time.monotonic()
    cmd = load(srv.smtp_port, sessions, count, size)
    if perf and where == "disk":  # the whole machine, while the load runs
        cmd = ["perf", "record", "-q", "-a", "-g", "-o", "%s.%d" % (perf, sessions), "--"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    f1, d1, c1, k1 = (metric(srv.ui_port, "mta_spool_flushes_total"), diskstats(disk),
                      cpu_times(), thread_ticks(pid))
    l1 = [metric(srv.ui_port, n) for n in LATENCY]
    if st:
        st.terminate()
        st.wait()
    srv.stop()
    if p.returncode != 0:
        b.log("smtp_load exit %d: %s" % (p.returncode, p.stdout.strip()))
    dc = [y - x for x, y in zip(c0, c1)]
    tot = float(sum(dc)) or 1.0
    cpu = {n: 100.0 * v / tot for n, v in zip(
        ("user", "nice", "sys", "idle", "iowait", "irq", "softirq", "steal"), dc)}
    us_per_tick = 1e6 / b.CLK_TCK
    threads = {n: (k1[n][0] - k0.get(n, (0, 0))[0]) * us_per_tick / count for n in k1}
    runq = {n: (k1[n][1] - k0.get(n, (0, 0))[1]) / 1000.0 / count for n in k1}
    row = {"where": where, "sessions": sessions, "rate": count / wall,
           "per_flush": count / max(1, f1 - f0),
           "dev_writes": (d1[0] - d0[0]) / count if where == "disk" else 0,
           "dev_flushes": (d1[1] - d0[1]) / count if where == "disk" else 0,
           "dev_flush_us": (1000.0 * (d1[2] - d0[2]) / (d1[1] - d0[1])
                            if where == "disk" and d1[1] > d0[1] else 0),
           "cpu": cpu, "threads": threads, "runq": runq,
           "latency": [1e6 * (y - x) / max(1, l1[0] - l0[0]) for x, y in zip(l0[1:], l1[1:])]}
    if trace:
        ts = fdatasync_times(os.path.join(d, "strace.txt"))
        if ts:
            row["fdatasync"] = (ts[len(ts) // 2], ts[int(len(ts) * .9)], ts[int(len(ts) * .99)],
                                ts[-1], sum(ts) / wall)
    if where == "tmpfs":
        shutil.rmtree(d, ignore_errors=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("-s", "--sessions", default="1,10,50")
    ap.add_argument("-m", "--messages", type=int, default=6000)
    ap.add_argument("-l", "--size", type=int, default=4096)
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--smtp-source", metavar="PATH", help="load with Postfix's smtp-source at PATH, "
                    "as the limit table does, instead of bench/smtp_load.c")
    ap.add_argument("--perf", metavar="FILE", help="perf record -a -g each disk run into FILE.N "
                    "(N sessions); read with perf report -i FILE.N --no-children --sort sym")
    a = ap.parse_args()
    b.MTAD = os.environ.get("MTAD") or os.path.join(b.SRCDIR, "build", "mtad")
    work = tempfile.mkdtemp(prefix="mtabench-profile.", dir=os.environ.get("BENCH_TMP",
                                                                             "/var/tmp"))
    shm = tempfile.mkdtemp(prefix="mtabench-profile.", dir="/dev/shm")
    if os.environ.get("BENCH_KEEP") != "1":  # kept, the next run pays for no deletion
        b.at_cleanup(lambda: shutil.rmtree(work, ignore_errors=True))
    else:
        b.log("keeping %s" % work)
    b.at_cleanup(lambda: shutil.rmtree(shm, ignore_errors=True))
    try:
        if a.smtp_source:  # the limit table's load: Postfix's client, with its arguments
            def load(port, sessions, count, size):
                return b.smtp_source_args(a.smtp_source, port, sessions, count, size)
        else:
            exe = os.path.join(work, "smtp_load")
            subprocess.run(["cc", "-O2", "-pthread", "-o", exe,
                            os.path.join(HERE, "smtp_load.c")], check=True)

            def load(port, sessions, count, size):
                return [exe, "-s", str(sessions), "-m", str(count), "-l", str(size), str(port)]
        rows = []
        for n in [int(x) for x in a.sessions.split(",")]:
            rows.append(one(shm, "tmpfs", n, a.messages, a.size, load, False, None))
            rows.append(one(work, "disk", n, a.messages, a.size, load, a.strace, a.perf))
        names = sorted({k for r in rows for k in r["threads"] if max(
            x["threads"].get(k, 0) for x in rows) >= 1.0})
        print("### mtad's durable intake, disk against tmpfs (%d messages of %d bytes, %s)\n"
              % (a.messages, a.size, a.smtp_source or "bench/smtp_load.c"))
        print("| spool | sessions | msg/s | msg per flush | device writes / msg | device flushes "
              "/ msg | device flush us | CPU user / sys / idle / iowait / softirq %% | %s |"
              % " | ".join("%s us/msg" % n for n in names))
        print("|---|---:|---:|---:|---:|---:|---:|---|%s" % ("---:|" * len(names)))
        for r in rows:
            c = r["cpu"]
            print("| %s | %d | %.0f | %.1f | %.1f | %.2f | %.0f | %.0f / %.0f / %.0f / %.0f / %.0f "
                  "| %s |" % (r["where"], r["sessions"], r["rate"], r["per_flush"],
                              r["dev_writes"], r["dev_flushes"], r["dev_flush_us"], c["user"],
                              c["sys"], c["idle"], c["iowait"], c["softirq"],
                              " | ".join("%.0f" % r["threads"].get(n, 0) for n in names)))
        print("\nWaiting for a CPU (us/msg): the time each thread was runnable but not running "
              "(/proc/PID/task/TID/schedstat), per message\n")
        print("| spool | sessions | %s |" % " | ".join(names))
        print("|---|---:|%s" % ("---:|" * len(names)))
        for r in rows:
            print("| %s | %d | %s |" % (r["where"], r["sessions"], " | ".join(
                "%.0f" % r["runq"].get(n, 0) for n in names)))
        print("\nMean commit latency, end of data to the 250 (us): the wait for the committer, "
              "the write and the flush of the group, the hand-back to the loop\n")
        print("| spool | sessions | wait | write | flush | reply | total |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            lat = r["latency"]
            print("| %s | %d | %s | %.0f |" % (r["where"], r["sessions"],
                                              " | ".join("%.0f" % x for x in lat), sum(lat)))
        if a.strace:
            print("\nCommitter fdatasync under strace (s): p50 / p90 / p99 / max, and their sum "
                  "as a share of the run")
            for r in rows:
                if "fdatasync" in r:
                    f = r["fdatasync"]
                    print("- %d sessions: %.6f / %.6f / %.6f / %.3f, %.0f%%"
                          % (r["sessions"], f[0], f[1], f[2], f[3], 100 * f[4]))
    finally:
        b.run_cleanups()


if __name__ == "__main__":
    main()
