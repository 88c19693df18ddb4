"""
dnssec_proxy.py - stands for a validating resolver in front of the test
dnsmasq (dnsserver.py): forwards each UDP query to it and sets the DNSSEC AD
bit on the answer when the question's name is in one of the "secure" zones
given, as a validating resolver (unbound, BIND) does for a signed zone. dnsmasq
cannot do that for its own records, and mtad only believes the AD bit of its
configured resolver (smtp_dns_support_level = dnssec), so this is all the DANE
tests need. UDP only: the test answers are far below 512 bytes.
Usage: with AdProxy(dns.port, ["dane.test"]) as p: settings["dns_servers"] = p.server
Not here: the records (dnsserver.py). Standard library only.
"""

import socket
import threading


def _qname(pkt):
    """_qname - the first question's name, lower case ("" when malformed)."""
    labels, p = [], 12
    try:
        while pkt[p]:
            n = pkt[p]
            labels.append(pkt[p + 1:p + 1 + n].decode("ascii", "replace"))
            p += 1 + n
    except IndexError:
        return ""
    return ".".join(labels).lower()


class AdProxy:
    def __init__(self, upstream_port, secure_zones):
        self.upstream = ("127.0.0.1", upstream_port)
        self.zones = [z.lower().rstrip(".") for z in secure_zones]
        self.sock = None
        self.thread = None
        self.stopping = False
        self.queries = []  # (name, ad) answered, for assertions

    @property
    def server(self):
        return "127.0.0.1:%d" % self.sock.getsockname()[1]

    def secure(self, name):
        return any(name == z or name.endswith("." + z) for z in self.zones)

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self):
        while not self.stopping:
            try:
                pkt, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(pkt, peer), daemon=True).start()

    def _one(self, pkt, peer):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
            up.settimeout(2)
            try:
                up.sendto(pkt, self.upstream)
                ans, _ = up.recvfrom(4096)
            except OSError:
                return
        name = _qname(pkt)
        ad = self.secure(name) and (ans[3] & 0x0F) in (0, 3)
        ans = bytearray(ans)
        if ad:
            ans[3] |= 0x20
        else:
            ans[3] &= ~0x20 & 0xFF
        self.queries.append((name, ad))
        try:
            self.sock.sendto(bytes(ans), peer)
        except OSError:
            pass

    def stop(self):
        self.stopping = True
        if self.thread:
            self.thread.join(5)
        if self.sock:
            self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
