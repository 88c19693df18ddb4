"""
dnsserver.py - a private dnsmasq for delivery tests (test-servers.md section 3):
answers only for the *.test zone from the records given, NXDOMAIN for other
.test names (local=/test/), on 127.0.0.1 and a free UDP+TCP port.
Usage: with DnsServer(tmpdir, ["mx-host=one.test,mx1.one.test,10", ...]) as dns:
           settings["dns_servers"] = dns.server
Not here: the mail sinks (smtpsink.py). Standard library only.
"""

import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time


def _free_port():
    """_free_port - a port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        p = random.randint(20000, 60000)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                u.bind(("127.0.0.1", p))
                t.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port for dnsmasq")


def query(port, name, qtype=15, timeout=0.5):
    """query - one UDP query; returns the rcode, or None on timeout."""
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for part in name.split("."):
        q += bytes([len(part)]) + part.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(4096)
        except socket.timeout:
            return None
    return data[3] & 0x0F


def available():
    return shutil.which("dnsmasq") is not None


class DnsServer:
    def __init__(self, directory, records):
        self.dir = directory
        self.records = list(records)
        self.port = None
        self.proc = None

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        self.port = _free_port()
        conf = os.path.join(self.dir, "dnsmasq.conf")
        with open(conf, "w") as f:
            f.write("port=%d\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n"
                    "no-poll\nlocal=/test/\nuser=root\npid-file=%s\nlog-facility=%s\n"
                    "log-queries\n" % (self.port, os.path.join(self.dir, "dnsmasq.pid"),
                                       os.path.join(self.dir, "dnsmasq.log")))
            for r in self.records:
                f.write(r + "\n")
        self.proc = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "-C", conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dnsmasq exited: %s" % self.proc.stderr.read().decode())
            if query(self.port, "probe.test", 15, 0.2) is not None:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("dnsmasq did not answer on port %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
