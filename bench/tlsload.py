#!/usr/bin/env python3
"""
tlsload.py - the TLS load client of the benchmark (bench.py runs it): N worker
processes (not threads, so the client is not limited by one core's GIL) against
127.0.0.1 only, bounded in count and time.
Not for: anything but the benchmark; it does not verify certificates (the
servers use a throw-away self-signed one).

Usage: tlsload.py handshake PORT PROCS SECONDS 0 SIZE
         full TLS handshakes on an SMTPS port (connect, TLS, 220, QUIT) for SECONDS
       tlsload.py starttls PORT PROCS SECONDS COUNT SIZE
         COUNT messages of SIZE bytes, one STARTTLS session per process
Prints one line: `done=N seconds=S rate=R errors=E`.
"""

import multiprocessing
import smtplib
import socket
import ssl
import sys
import time


def _ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.minimum_version = ssl.TLSVersion.TLSv1_2
    return c


def handshakes(port, deadline, q):
    """handshakes - full handshakes (a new context each time: no resumption) until DEADLINE."""
    done = err = 0
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with _ctx().wrap_socket(raw) as s:
                    f = s.makefile("rb")
                    if not f.readline().startswith(b"220"):
                        raise OSError("no greeting")
                    s.sendall(b"QUIT\r\n")
                    f.readline()
            done += 1
        except (OSError, ssl.SSLError):
            err += 1
            time.sleep(0.01)
    q.put((done, err))


def messages(port, n, size, deadline, q):
    """messages - one STARTTLS session, N messages of SIZE bytes of body, until DEADLINE."""
    body = ("Subject: bench\r\n\r\n" + ("x" * 76 + "\r\n") * (size // 78 + 1))[: size + 20]
    done = err = 0
    try:
        s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30)
        s.starttls(context=_ctx())
        s.ehlo("client.example")
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            s.sendmail("bench@example.com", ["rcpt@example.net"], body)
            done += 1
        s.quit()
    except (OSError, smtplib.SMTPException, ssl.SSLError):
        err += 1
    q.put((done, err))


def main():
    mode, port, procs, seconds, count, size = sys.argv[1], *map(int, sys.argv[2:7])
    q = multiprocessing.Queue()
    t0 = time.monotonic()
    deadline = t0 + seconds
    ps = []
    for i in range(procs):
        if mode == "handshake":
            p = multiprocessing.Process(target=handshakes, args=(port, deadline, q))
        else:
            n = count // procs + (1 if i < count % procs else 0)
            p = multiprocessing.Process(target=messages, args=(port, n, size, deadline, q))
        p.start()
        ps.append(p)
    done = err = 0
    for _ in ps:
        try:
            d, e = q.get(timeout=seconds + 60)
        except Exception:
            break
        done += d
        err += e
    el = time.monotonic() - t0
    for p in ps:
        p.join(5)
        if p.is_alive():
            p.kill()
    print("done=%d seconds=%.2f rate=%.1f errors=%d" % (done, el, done / el if el else 0, err))


if __name__ == "__main__":
    main()
