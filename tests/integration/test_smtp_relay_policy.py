"""
test_smtp_relay_policy.py - smtpd_trusted_networks as clients from different
source addresses see it: trusted clients relay, others get Postfix's
"554 5.7.1 <rcpt>: Relay access denied" and the NOQUEUE reject log line.
IPv4 CIDR lists and IPv6 (::1, skipped when the machine has no IPv6 loopback).
Not here: other limits (test_smtp_limits.py).
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import queue_id_of  # noqa: E402

MSG = (b"From: s@example.org\r\nTo: x@example.com\r\nSubject: relay\r\n"
       b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <relay@client.example>\r\n\r\nhi\r\n")


class RelayPolicy(mtatest.MtaTestCase):
    def try_relay(self, d, source=None, rcpt="x@example.com"):
        """try_relay - a transaction from SOURCE; returns (RCPT reply, final reply)."""
        with d.client(source=source) as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250, "2.1.0 Ok")
            rr = c.cmd("RCPT TO:<%s>" % rcpt)
            if rr.code != 250:
                final = c.cmd("DATA")
            else:
                self.assertReply(c.cmd("DATA"), 354)
                c.send(MSG + b".\r\n")
                final = c.reply()
            self.assertReply(c.cmd("QUIT"), 221)
        return rr, final

    def assertDenied(self, d, source, rcpt="x@example.com", client_ip=None):
        client_ip = client_ip or source
        before = d.queued_ids()
        rr, final = self.try_relay(d, source, rcpt)
        self.assertEqual(rr.full(), "554 5.7.1 <%s>: Relay access denied" % rcpt)
        self.assertReply(final, 554, "5.5.1 Error: no valid recipients")
        self.assertEqual(d.queued_ids(), before)
        d.wait_log(r"NOQUEUE: reject: RCPT from unknown\[%s\]: 554 5\.7\.1 <%s>: Relay access denied; "
                   r"from=<s@example\.org> to=<%s> proto=ESMTP helo=<client\.example>$"
                   % (re.escape(client_ip), re.escape(rcpt), re.escape(rcpt)))

    def assertRelayed(self, d, source, client_ip=None):
        rr, final = self.try_relay(d, source)
        self.assertReply(rr, 250, "2.1.5 Ok")
        self.assertReply(final, 250, "2.0.0 Ok: queued as ")
        qid = queue_id_of(final)
        self.assertIn(qid, d.queued_ids())
        d.wait_log(r": %s: client=unknown\[%s\]$" % (qid, re.escape(client_ip or source)))

    def test_untrusted_ipv4_denied_trusted_accepted(self):
        d = self.daemon(settings={"smtpd_trusted_networks": "127.0.0.1/32"})
        self.assertDenied(d, "127.0.0.2")
        self.assertRelayed(d, "127.0.0.1")
        # relay refusal is per recipient: the transaction is still usable
        with d.client(source="127.0.0.2") as c:
            c.ehlo()
            self.assertReply(c.cmd("MAIL FROM:<s@example.org>"), 250)
            self.assertReply(c.cmd("RCPT TO:<a@example.com>"), 554, "5.7.1 <a@example.com>: Relay access denied")
            self.assertReply(c.cmd("RCPT TO:<b@example.net>"), 554, "5.7.1 <b@example.net>: Relay access denied")
            self.assertReply(c.cmd("RSET"), 250)
        self.assertEqual(len(d.queued_ids()), 1)

    def test_cidr_list(self):
        d = self.daemon(settings={"smtpd_trusted_networks": "10.0.0.0/8, 127.0.0.0/30 192.168.1.1"})
        self.assertRelayed(d, "127.0.0.1")
        self.assertRelayed(d, "127.0.0.3")
        self.assertDenied(d, "127.0.0.4")
        self.assertDenied(d, "127.1.0.1")

    def test_single_addresses(self):
        d = self.daemon(settings={"smtpd_trusted_networks": "127.0.0.1,127.0.0.5"})
        self.assertRelayed(d, "127.0.0.5")
        self.assertDenied(d, "127.0.0.6")

    def test_open_relay(self):
        d = self.daemon(settings={"smtpd_trusted_networks": "0.0.0.0/0"})
        self.assertRelayed(d, "127.0.0.9")

    @unittest.skipUnless(mtatest.have_ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6_trusted(self):
        d = self.daemon(settings={"in_address": "::1", "smtpd_trusted_networks": "127.0.0.1/32, ::1/128"})
        self.assertRelayed(d, None, client_ip="::1")

    @unittest.skipUnless(mtatest.have_ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6_untrusted(self):
        d = self.daemon(settings={"in_address": "::1", "smtpd_trusted_networks": "127.0.0.1/32 fe80::/10"})
        self.assertDenied(d, None, client_ip="::1")

    @unittest.skipUnless(mtatest.have_ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6_prefix(self):
        d = self.daemon(settings={"in_address": "::1", "smtpd_trusted_networks": "::/64"})
        self.assertRelayed(d, None, client_ip="::1")


if __name__ == "__main__":
    mtatest.main()
