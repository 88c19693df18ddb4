#!/usr/bin/env python3
"""
queue_scale.py - what a large deferred queue costs mtad: for each queue size N
(default 10000,100000) a fresh data volume is filled with N deferred 4 KB messages
by bench/queue_fill (through the spool's own intake, not SMTP), mtad is started on
it and the script measures

  fill      seconds queue_fill took (msg/s)
  banner    seconds from exec to the SMTP 220 greeting
  loaded    seconds from exec until /api/stats says the scheduler has read the whole
            queue (qmgr_unloaded_messages == 0 and mqueue_messages == N)
  stall     the longest event-loop stall during the start-up load, ms
            (loop_stall_max: a 100 ms timer's lateness, from the loop's second turn on),
            and the slowest 220 greeting seen while the queue was loading (a fresh
            connection every 20 ms: what a client sees of any stall)
  RSS/HWM   VmRSS and VmHWM after the load, MB; per msg = (RSS - RSS of an empty
            queue) / N, bytes
  intake    msg/s of a short SMTP burst (B messages over S sessions, this script's
            Python client: the same client for every N, so compare the column)
  mtactl    seconds of `mtactl queue` (its first page, 1000 messages)
  postqueue seconds of `postqueue -p > /dev/null` (every message, paged)
  api50     seconds of GET /api/queue?limit=50 (median of 5)
  flush     `mtactl flush` until it returned / the run started (the first message
            tried again: the deferred counter moves) / the run finished (every
            message tried once: deferred grew by N; deliveries go to a closed
            local port, so each is deferred again at once)
  restart   mtad stopped and started again on the same volume, now all mail_owner's
            (queue_fill runs as root, so the first start gave every file to
            mail_owner): seconds to the 220 greeting / until loaded, as a restart
            after an outage sees it

and prints one Markdown table row per N. Loopback only; every process and temp dir
it makes is removed at the end (BENCH_KEEP=1 keeps the dirs).

  nice -n 19 bench/queue_scale.py [-n 10000,100000] [--build build] [--burst 2000]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Mtad:
    def __init__(self, build, workdir, data_volume, hold_port, extra=()):
        self.build = build
        self.smtp_port, self.ui_port = free_port(), free_port()
        self.conf = os.path.join(workdir, "mtad.cf")
        with open(self.conf, "w") as f:
            f.write("data_volume = %s\n" % data_volume)
            f.write("in_address = 127.0.0.1\nsmtp_port = %d\nui_port = %d\n"
                    % (self.smtp_port, self.ui_port))
            f.write("maillog_file = %s\n" % os.path.join(workdir, "maillog"))
            f.write("smtpd_trusted_networks = 127.0.0.1/32\n")
            f.write("hostname = bench.example\n")
            # deliveries are refused at once: every attempt defers, nothing leaves
            f.write("smart_relay = [127.0.0.1]:%d\n" % hold_port)
            f.write("minimal_backoff_time = 3600s\nmaximal_backoff_time = 4000s\n")
            for kv in extra:
                f.write("%s = %s\n" % tuple(kv.split("=", 1)))
        self.proc = None
        self.errf = open(os.path.join(workdir, "mtad.stderr"), "ab")

    def start(self):
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([os.path.join(self.build, "mtad"), "-c", self.conf],
                                     stdout=self.errf, stderr=self.errf)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(600)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def banner(self, timeout=3600):
        while time.monotonic() - self.t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError("mtad exited during start-up")
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=5) as s:
                    if s.recv(512).startswith(b"220"):
                        return time.monotonic() - self.t0
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError("no banner")

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.ui_port, timeout=600)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    def stats(self):
        while True:
            try:
                return json.loads(self.get("/api/stats")[1])
            except (OSError, ValueError):
                time.sleep(0.05)

    def proc_status(self):
        out = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
        return out

    def ctl(self, *args, out=subprocess.DEVNULL):
        t0 = time.monotonic()
        subprocess.run([os.path.join(self.build, "mtactl"), "-c", self.conf] + list(args),
                       stdout=out, check=True)
        return time.monotonic() - t0

    def postqueue(self, flag):
        t0 = time.monotonic()
        subprocess.run([os.path.join(self.build, "postqueue"), "-c", self.conf, flag],
                       stdout=subprocess.DEVNULL, check=True)
        return time.monotonic() - t0


def smtp_session(port, count, errors):
    """smtp_session - COUNT messages of 4 KB on one connection, one after the other."""
    body = b"Subject: burst\r\n\r\n" + (b"x" * 70 + b"\r\n") * 56 + b".\r\n"
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if not line:
                    raise OSError("closed")
                if line[3:4] != b"-":
                    return line
        reply()
        s.sendall(b"EHLO bench.example\r\n")
        reply()
        for _ in range(count):
            s.sendall(b"MAIL FROM:<b@example.com>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
            for _ in range(3):
                reply()
            s.sendall(body)
            if not reply().startswith(b"250"):
                errors.append(1)
        s.sendall(b"QUIT\r\n")
        s.close()
    except OSError:
        errors.append(1)


def burst(port, total, sessions):
    errors = []
    per = total // sessions
    th = [threading.Thread(target=smtp_session, args=(port, per, errors)) for _ in range(sessions)]
    t0 = time.monotonic()
    for x in th:
        x.start()
    for x in th:
        x.join()
    dt = time.monotonic() - t0
    return (per * sessions - len(errors)) / dt


def wait_loaded(args, m, n):
    """wait_loaded - poll until the scheduler has read all N messages; the last stats."""
    while True:
        s = m.stats()
        if "qmgr_unloaded_messages" not in s:
            # a build before the bounded scheduler: loaded when the listing counts all
            out = subprocess.run([os.path.join(args.build, "mtactl"), "-c", m.conf, "queue",
                                  "limit=1"], capture_output=True, text=True).stdout
            if out.rstrip().endswith("in %d Requests." % n) or n == 0:
                return s
        elif s["qmgr_unloaded_messages"] == 0 and s["mqueue_messages"] >= n:
            return s
        time.sleep(0.02)


def run_one(args, n, base_rss):
    work = tempfile.mkdtemp(prefix="queue-scale-%d-" % n, dir=args.tmp)
    hold = socket.socket()
    hold.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
    m = None
    row = {"n": n}
    try:
        dv = os.path.join(work, "data")
        t0 = time.monotonic()
        if n:
            subprocess.run([os.path.join(args.build, "queue_fill"), "-d", dv, "-n", str(n)],
                           check=True, stdout=subprocess.DEVNULL)
        row["fill"] = time.monotonic() - t0
        m = Mtad(args.build, work, dv, hold.getsockname()[1], args.set)
        m.start()
        row["banner"] = m.banner()
        probe = {"max": 0.0, "stop": False}

        def greet_probe():
            while not probe["stop"]:
                t2 = time.monotonic()
                try:
                    with socket.create_connection(("127.0.0.1", m.smtp_port), timeout=30) as c:
                        c.recv(512)
                    probe["max"] = max(probe["max"], time.monotonic() - t2)
                except OSError:
                    pass
                time.sleep(0.02)
        pt = threading.Thread(target=greet_probe)
        pt.start()
        s = wait_loaded(args, m, n)
        row["loaded"] = time.monotonic() - m.t0
        probe["stop"] = True
        pt.join()
        row["greet_max"] = probe["max"]
        row["stall_ms"] = s.get("loop_stall_max", 0) / 1000.0
        row.update(m.proc_status())
        row["per_msg"] = (row["VmRSS"] - base_rss) / n if n and base_rss else 0
        row["intake"] = burst(m.smtp_port, args.burst, args.sessions)
        row["mtactl"] = m.ctl("queue")
        row["postqueue"] = m.postqueue("-p")
        api = []
        for _ in range(5):
            t1 = time.monotonic()
            st, _ = m.get("/api/queue?limit=50")
            api.append(time.monotonic() - t1)
        row["api50"] = statistics.median(api)
        before = m.stats()["deferred"]
        target = n + args.burst
        t1 = time.monotonic()
        m.ctl("flush")
        row["flush_ret"] = time.monotonic() - t1
        started = None
        while True:
            s = m.stats()
            if started is None and s["deferred"] > before:
                started = time.monotonic() - t1
            if s["deferred"] - before >= target:
                break
            if time.monotonic() - t1 > args.flush_timeout:
                break
            time.sleep(0.02)
        row["flush_start"] = started or 0
        row["flush_done"] = time.monotonic() - t1
        row["flush_tried"] = s["deferred"] - before
        row["stall_all_ms"] = s.get("loop_stall_max", 0) / 1000.0
        row["hwm_end"] = m.proc_status()["VmHWM"]
        m.stop()
        m = Mtad(args.build, work, dv, hold.getsockname()[1], args.set)
        m.start()
        row["re_banner"] = m.banner()
        wait_loaded(args, m, n + args.burst)
        row["re_loaded"] = time.monotonic() - m.t0
        return row
    finally:
        if m:
            m.stop()
        hold.close()
        cleanup.append(work)


cleanup = []  # temp dirs, removed after the row is printed (a million files take minutes)


def clean():
    while cleanup:
        w = cleanup.pop()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(w, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", default="10000,100000")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--tmp", default=os.environ.get("BENCH_TMP", "/var/tmp"))
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--flush-timeout", type=float, default=1800)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for mtad (e.g. qmgr_message_active_limit=1000)")
    args = ap.parse_args()
    try:
        table(args)
    finally:
        clean()


def table(args):
    base = run_one(argparse.Namespace(**{**vars(args), "burst": 10}), 0, 0)["VmRSS"]
    clean()
    print("empty queue: VmRSS %.1f MB" % (base / 1e6), flush=True)
    print("| queued | fill msg/s | 220 after | loaded after | longest stall (load / all) "
          "| slowest 220 while loading "
          "| VmRSS / VmHWM | RSS per msg | intake msg/s | mtactl queue | postqueue -p "
          "| /api/queue?limit=50 | flush: returned / run started / all tried "
          "| restart: 220 / loaded |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in [int(x) for x in args.n.split(",")]:
        r = run_one(args, n, base)
        print("| %d | %.0f | %.2f s | %.2f s | %.0f / %.0f ms | %.0f ms | %.0f / %.0f MB | %.0f B | %.0f "
              "| %.3f s | %.2f s | %.4f s | %.3f / %.2f / %.1f s (%d tried) | %.2f / %.2f s |"
              % (n, n / r["fill"] if r["fill"] else 0, r["banner"], r["loaded"], r["stall_ms"],
                 r["stall_all_ms"], r["greet_max"] * 1000, r["VmRSS"] / 1e6, r["hwm_end"] / 1e6, r["per_msg"],
                 r["intake"], r["mtactl"], r["postqueue"], r["api50"], r["flush_ret"],
                 r["flush_start"], r["flush_done"], r["flush_tried"], r["re_banner"],
                 r["re_loaded"]), flush=True)
        clean()


if __name__ == "__main__":
    sys.exit(main())
