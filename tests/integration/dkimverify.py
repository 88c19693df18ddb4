"""
dkimverify.py - an independent DKIM verifier for the tests: dkimpy's dkim.verify (Debian's
python3-dkim, so run it with /usr/bin/python3) on the message read from standard input, the
public key looked up as a TXT record through the test DNS server (dnspython).
Usage: /usr/bin/python3 dkimverify.py DNS_PORT < message
Exit 0: the first signature verifies; 1: it does not (dkimpy's log on stderr); 2: usage.
"""

import logging
import sys

import dkim
import dns.resolver


def main():
    if len(sys.argv) != 2:
        print("usage: dkimverify.py DNS_PORT < message", file=sys.stderr)
        return 2
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ["127.0.0.1"]
    res.port = int(sys.argv[1])
    res.lifetime = 5

    def txt(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        ans = res.resolve(name.rstrip("."), "TXT")
        return b"".join(b"".join(r.strings) for r in ans)

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
    msg = sys.stdin.buffer.read()
    ok = dkim.verify(msg, logger=logging.getLogger("dkim"), dnsfunc=txt)
    print("verified" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
