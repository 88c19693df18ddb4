"""
scriptmilter.py - a small mail filter for the tests that speaks the Sendmail milter
protocol (version 6) itself: listens on a free port of 127.0.0.1, negotiates, records
every event (with its macros) and answers as its script says, per stage:
  script = {"mail": ("tempfail",), "rcpt": ("replycode", "550 5.7.0 nope"),
            "eom": [("addheader", "X-A", "1"), ("continue",)], ...}
A stage maps to one reply or to a list (modifications, then the final reply). Other
replies: ("sleep", seconds) before the next item, ("close",) drops the connection; a
function instead of a reply is called for each event.
Stages: connect helo mail rcpt data header eoh body eom. Unscripted: continue.
Runs in threads of the test (start/stop). Standard library only.
"""

import socket
import struct
import threading
import time

SMFIF_ALL = 0x1FF
STAGE_CMDS = {b"C": "connect", b"H": "helo", b"M": "mail", b"R": "rcpt", b"T": "data",
              b"L": "header", b"N": "eoh", b"B": "body", b"E": "eom"}


def _pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def _z(*strs):
    return b"".join(s.encode() + b"\0" for s in strs)


class Event:
    def __init__(self, stage, data, macros, conn):
        self.stage, self.data, self.macros, self.conn = stage, data, macros, conn

    def strings(self):
        return [s.decode("latin-1") for s in self.data.split(b"\0")[:-1]]


class ScriptMilter:
    def __init__(self, script=None, protocol=0, per_conn=None):
        """SCRIPT: stage -> reply (see above); PROTOCOL: the SMFIP_* steps we skip or do not
        reply to; PER_CONN: optional function(conn_no) -> script for that connection."""
        self.script = script or {}
        self.protocol = protocol
        self.per_conn = per_conn
        self.events = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.spec = "inet:127.0.0.1:%d" % self.port
        self.nconn = 0
        self.stopping = False
        self.conns = []

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self.conns):
            try:
                c.close()
            except OSError:
                pass

    def stages(self):
        with self.lock:
            return [e.stage for e in self.events]

    def find(self, stage):
        with self.lock:
            return [e for e in self.events if e.stage == stage]

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.nconn += 1
            self.conns.append(c)
            script = self.per_conn(self.nconn) if self.per_conn else self.script
            threading.Thread(target=self._serve, args=(c, self.nconn, script),
                             daemon=True).start()

    def _read(self, c, n):
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _serve(self, c, no, script):
        macros = {}
        try:
            while True:
                (n,) = struct.unpack(">I", self._read(c, 4))
                body = self._read(c, n)
                cmd, data = body[:1], body[1:]
                if cmd == b"O":
                    ver, act, proto = struct.unpack(">III", data[:12])
                    c.sendall(_pkt(b"O", struct.pack(">III", 6, SMFIF_ALL,
                                                     self.protocol & proto)))
                    continue
                if cmd == b"D":
                    parts = data[1:].split(b"\0")
                    for k in range(0, len(parts) - 1, 2):
                        macros[parts[k].decode()] = parts[k + 1].decode("latin-1")
                    continue
                if cmd in (b"A", b"Q", b"K"):
                    with self.lock:
                        self.events.append(Event({b"A": "abort"}.get(cmd, "quit"), data,
                                                 dict(macros), no))
                    if cmd != b"A":
                        return
                    continue
                stage = STAGE_CMDS.get(cmd, "unknown")
                with self.lock:
                    self.events.append(Event(stage, data, dict(macros), no))
                if self._noreply(stage):
                    continue
                if not self._answer(c, script.get(stage, ("continue",))):
                    return
        except (EOFError, OSError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _noreply(self, stage):
        bits = {"connect": 0x1000, "helo": 0x2000, "mail": 0x4000, "rcpt": 0x8000,
                "data": 0x10000, "header": 0x80, "eoh": 0x40000, "body": 0x80000}
        return bool(self.protocol & bits.get(stage, 0))

    def _answer(self, c, reply):
        if callable(reply):  # decided per event by the test
            reply = reply()
        items = reply if isinstance(reply, list) else [reply]
        for it in items:
            kind, args = it[0], it[1:]
            if kind == "sleep":
                time.sleep(args[0])
            elif kind == "sleep_first":  # only the first time any connection gets here
                with self.lock:
                    first, self.slept = not getattr(self, "slept", False), True
                if first:
                    time.sleep(args[0])
            elif kind == "close":
                return False
            elif kind == "continue":
                c.sendall(_pkt(b"c"))
            elif kind == "accept":
                c.sendall(_pkt(b"a"))
            elif kind == "reject":
                c.sendall(_pkt(b"r"))
            elif kind == "tempfail":
                c.sendall(_pkt(b"t"))
            elif kind == "discard":
                c.sendall(_pkt(b"d"))
            elif kind == "skip":
                c.sendall(_pkt(b"s"))
            elif kind == "replycode":
                c.sendall(_pkt(b"y", _z(args[0])))
            elif kind == "quarantine":
                c.sendall(_pkt(b"q", _z(args[0])))
            elif kind == "addheader":
                c.sendall(_pkt(b"h", _z(args[0], args[1])))
            elif kind == "insheader":
                c.sendall(_pkt(b"i", struct.pack(">I", args[0]) + _z(args[1], args[2])))
            elif kind == "chgheader":
                c.sendall(_pkt(b"m", struct.pack(">I", args[0]) + _z(args[1], args[2])))
            elif kind == "replbody":
                c.sendall(_pkt(b"b", args[0]))
            elif kind == "addrcpt":
                c.sendall(_pkt(b"+", _z(args[0])))
            elif kind == "delrcpt":
                c.sendall(_pkt(b"-", _z(args[0])))
            elif kind == "chgfrom":
                c.sendall(_pkt(b"e", _z(args[0], "")))
            elif kind == "progress":
                c.sendall(_pkt(b"p"))
            else:
                raise ValueError(kind)
        return True
