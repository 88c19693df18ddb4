"""
test_delivery_relay.py - delivery through smart_relay to Python SMTP sinks on
free high ports of 127.0.0.1: byte-for-byte delivery and Postfix's maillog
lines, upstream down then up (deferred, mtactl queue exactly in Postfix's
long-ID mailq layout, its pages, --json, flush),
mtactl delete, 4xx then 2xx, 5xx bounce as a parseable RFC 3464 DSN, DSN
NOTIFY=NEVER / SUCCESS, crash safety (kill -9 after a partial delivery), and
pflogsumm's counts of the daemon's log.
Not here: MX delivery and STARTTLS (test_delivery_mx.py).
"""

import email
import email.policy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
import smtpsink  # noqa: E402
from mtatest import t  # noqa: E402

SENT_RE = (r"\b([0-9A-F]+): to=<%s>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, delay=[0-9.]+, "
           r"delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: "
           r"queued as SINK\d+\)$")

FAST_RETRY = {"minimal_backoff_time": "1s", "maximal_backoff_time": "2s", "queue_run_delay": "1s"}


class SlowDotSink(smtpsink.Sink):
    """A sink that, once the first message and its final dot arrived, waits DOT_DELAY
    seconds before it replies (a slow content filter): at_dot is set when it starts waiting."""

    def __init__(self, *a, dot_delay=2.0, **kw):
        super().__init__(*a, **kw)
        self.dot_delay = dot_delay
        self.at_dot = threading.Event()

    def _reply(self, stage, default):
        if stage == "dot" and not self.at_dot.is_set():
            self.at_dot.set()
            time.sleep(self.dot_delay)
        return super()._reply(stage, default)


class DeliveryRelayTest(mtatest.MtaTestCase):

    def sink(self, **kw):
        s = smtpsink.Sink("127.0.0.1", kw.pop("port", 0), **kw).start()
        self.addCleanup(s.stop)
        return s

    def mtactl(self, d, *args):
        return subprocess.run([mtatest.MTACTL, "-c", d.config_path] + list(args),
                              capture_output=True, text=True, timeout=t(20))

    def send(self, d, sender, rcpts, body, mail_options=(), rcpt_options=()):
        s = d.smtp()
        try:
            s.ehlo("client.example")
            s.sendmail(sender, rcpts, body, mail_options=list(mail_options),
                       rcpt_options=list(rcpt_options))
        finally:
            s.quit()

    def test_delivered_byte_for_byte_with_postfix_log_lines(self):
        sink = self.sink()
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port})
        body = (b"Subject: relay test\r\nFrom: a@src.test\r\n\r\nline one\r\n.starts with a dot\r\n"
                b"..two dots\r\n" + b"x" * 998 + b"\r\nend\r\n")  # longer: broken (hygiene test)
        self.send(d, "a@src.test", ["b@dst.test", "c@dst.test"], body)
        msgs = sink.wait_messages(1, t(10))
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertEqual(m.mail_from, "a@src.test")
        self.assertEqual(sorted(m.rcpts), ["b@dst.test", "c@dst.test"])
        # the body arrives byte for byte; the client's headers in order, after Received:
        head, _, rest = m.data.partition(b"\r\n\r\n")
        self.assertEqual(rest, body.split(b"\r\n\r\n", 1)[1])
        self.assertTrue(head.startswith(b"Received: "), head)
        self.assertIn(b"\r\nSubject: relay test\r\nFrom: a@src.test", head)
        for rcpt in ("b@dst\\.test", "c@dst\\.test"):
            d.wait_log(SENT_RE % (rcpt, sink.port), t(5))
        qid = re.search(SENT_RE % ("b@dst\\.test", sink.port), d.maillog(), re.M).group(1)
        d.wait_log(r"\b%s: removed$" % qid, t(5))
        self.assertEqual(d.queued_ids(), set())
        r = self.mtactl(d, "queue")
        self.assertEqual((r.returncode, r.stdout), (0, "Mail queue is empty\n"), r.stderr)
        st = self.mtactl(d, "stats")
        self.assertEqual(st.returncode, 0, st.stderr)
        self.assertIn("delivered 2\n", st.stdout)

    def test_upstream_down_then_up_queue_flush(self):
        port = mtatest.free_port()
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % port, "minimal_backoff_time": "1h",
                         "maximal_backoff_time": "2h", "queue_run_delay": "1h"})
        for i in range(3):
            self.send(d, "s%d@src.test" % i, ["r%d@dst.test" % i], b"Subject: %d\r\n\r\nbody\r\n" % i)
        lines = d.wait_log(r"status=deferred \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: "
                           r"Connection refused\)$" % port, t(10), count=3)
        self.assertTrue(all(", dsn=4.4.1, " in l for l in lines), lines)
        js = self.mtactl(d, "queue", "--json")
        self.assertEqual(js.returncode, 0, js.stderr)
        objs = [json.loads(l) for l in js.stdout.splitlines()]
        self.assertEqual(len(objs), 3)
        for o in objs:
            self.assertEqual(o["queue_name"], "deferred")
            self.assertRegex(o["queue_id"], r"^[0-9A-F]{16}$")
            self.assertIn("Connection refused", o["recipients"][0]["delay_reason"])
        self.assertEqual(sorted(o["sender"] for o in objs), ["s0@src.test", "s1@src.test",
                                                            "s2@src.test"])
        # mailq exactly as Postfix's showq_compat prints long queue IDs
        q = self.mtactl(d, "queue")
        self.assertEqual(q.returncode, 0, q.stderr)
        reason = "connect to 127.0.0.1[127.0.0.1]:%d: Connection refused" % port
        want = [r"----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------"]
        for i, o in enumerate(objs):
            if i:
                want.append(r"")
            want += [r"%s  %8d (Sun|Mon|Tue|Wed|Thu|Fri|Sat) "
                     r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 123]\d "
                     r"\d\d:\d\d:\d\d %s" % (o["queue_id"], o["message_size"],
                                             re.escape(o["sender"])),
                     r" {%d}\(%s\)" % (76 - len(reason), re.escape(reason)),
                     r" {47}%s" % re.escape(o["recipients"][0]["address"])]
        kbytes = sum(o["message_size"] for o in objs) // 1024
        want += [r"", r"-- %d Kbytes in 3 Requests\." % kbytes]
        got = q.stdout.split("\n")
        self.assertEqual(got[-1], "", q.stdout)
        self.assertEqual(len(got) - 1, len(want), q.stdout)
        for line, rx in zip(got, want):
            self.assertRegex(line, "^%s$" % rx)
        # one page: the first two, a line naming the next page, the trailer counts them all
        p1 = self.mtactl(d, "queue", "limit=2")
        self.assertEqual(p1.returncode, 0, p1.stderr)
        self.assertEqual(p1.stdout, "\n".join(got[:8]) + "\n\n... 1 more Request: mtactl queue "
                         "after=%s\n\n%s\n" % (objs[1]["queue_id"], got[-2]))
        p2 = self.mtactl(d, "queue", "after=" + objs[1]["queue_id"])
        self.assertEqual(p2.stdout, "\n".join(got[:1] + got[9:]))
        js2 = self.mtactl(d, "queue", "--json", "limit=1", "offset=1")
        self.assertEqual([json.loads(l) for l in js2.stdout.splitlines()], objs[1:2])
        bad = self.mtactl(d, "queue", "limit=0")
        self.assertEqual(bad.returncode, 1)
        self.assertIn("limit=1..100000", bad.stderr)
        # start the upstream, flush: everything is delivered
        sink = self.sink(port=port)
        r = self.mtactl(d, "flush")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(sink.wait_messages(3, t(10))), 3)
        d.wait_log(r": removed$", t(5), count=3)
        self.assertEqual(self.mtactl(d, "queue").stdout, "Mail queue is empty\n")

    def test_delete_one_and_all(self):
        port = mtatest.free_port()
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % port, "queue_run_delay": "1h",
                         "minimal_backoff_time": "1h"})
        for i in range(3):
            self.send(d, "s@src.test", ["r%d@dst.test" % i], b"Subject: x\r\n\r\nbody\r\n")
        d.wait_log(r"status=deferred", t(10), count=3)
        objs = [json.loads(l) for l in self.mtactl(d, "queue", "--json").stdout.splitlines()]
        victim = objs[0]["queue_id"]
        r = self.mtactl(d, "delete", victim)
        self.assertEqual(r.returncode, 0, r.stderr)
        d.wait_log(r"\b%s: removed$" % victim, t(5))
        left = [json.loads(l)["queue_id"] for l in self.mtactl(d, "queue", "--json").stdout.splitlines()]
        self.assertEqual(len(left), 2)
        self.assertNotIn(victim, left)
        r = self.mtactl(d, "delete", "NOSUCHID")
        self.assertEqual(r.returncode, 1)
        self.assertIn("NOSUCHID", r.stderr)
        r = self.mtactl(d, "delete", "ALL")
        self.assertEqual(r.returncode, 0, r.stderr)
        d.wait_log(r": removed$", t(5), count=3)
        deadline = time.monotonic() + t(5)
        while d.queued_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(d.queued_ids(), set())
        self.assertEqual(self.mtactl(d, "queue").stdout, "Mail queue is empty\n")

    def test_4xx_then_2xx_is_retried(self):
        sink = self.sink(replies={"dot": ["451 4.3.0 Error: try again later", None]})
        settings = {"smart_relay": "[127.0.0.1]:%d" % sink.port}
        settings.update(FAST_RETRY)
        d = self.daemon(settings)
        self.send(d, "a@src.test", ["b@dst.test"], b"Subject: retry\r\n\r\nbody\r\n")
        d.wait_log(r"to=<b@dst\.test>, .*dsn=4\.3\.0, status=deferred \(host 127\.0\.0\.1"
                   r"\[127\.0\.0\.1\] said: 451 4\.3\.0 Error: try again later \(in reply to end "
                   r"of DATA command\)\)$", t(10))
        d.wait_log(SENT_RE % ("b@dst\\.test", sink.port), t(15))
        self.assertEqual(len(sink.messages), 1)
        st = self.mtactl(d, "stats").stdout
        self.assertIn("deferred 1\n", st)
        self.assertIn("delivered 1\n", st)

    def test_5xx_bounce_is_an_rfc3464_report(self):
        sink = self.sink(rcpt_map={"bad@dst.test": "550 5.1.1 <bad@dst.test>: Recipient address "
                                                   "rejected: User unknown"})
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port})
        original = b"Subject: will bounce\r\nMessage-Id: <orig-1@src.test>\r\n\r\nhello\r\n"
        self.send(d, "sender@src.test", ["good@dst.test", "bad@dst.test"], original)
        d.wait_log(r"to=<bad@dst\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*dsn=5\.1\.1, "
                   r"status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 "
                   r"<bad@dst\.test>: Recipient address rejected: User unknown \(in reply to RCPT "
                   r"TO command\)\)$" % sink.port, t(10))
        line = d.wait_log(r"sender non-delivery notification: [0-9A-F]+$", t(10))[0]
        newid = line.rsplit(" ", 1)[1]
        msgs = sink.wait_messages(2, t(10))
        bounces = [m for m in msgs if m.mail_from == ""]
        self.assertEqual(len(bounces), 1, msgs)
        b = bounces[0]
        self.assertEqual(b.rcpts, ["sender@src.test"])
        msg = email.message_from_bytes(b.data, policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertTrue(msg["From"].startswith("MAILER-DAEMON@"))
        self.assertEqual(msg["Subject"], "Undelivered Mail Returned to Sender")
        parts = list(msg.iter_parts())
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status", "message/rfc822"])
        status = parts[1].get_payload()
        # per-message fields, then one block per recipient
        fields = [dict(b.items()) for b in status]
        self.assertEqual(fields[0]["Reporting-MTA"], "dns; mta.test.example")
        self.assertEqual(len(fields), 2, fields)
        r = fields[1]
        self.assertEqual(r["Final-Recipient"], "rfc822; bad@dst.test")
        self.assertEqual(r["Action"], "failed")
        self.assertEqual(r["Status"], "5.1.1")
        self.assertIn("550 5.1.1", r["Diagnostic-Code"])
        returned = parts[2].get_payload()[0]
        self.assertEqual(returned["Subject"], "will bounce")
        d.wait_log(r"\b%s: removed$" % newid, t(10))
        st = self.mtactl(d, "stats").stdout
        self.assertIn("bounced 1\n", st)

    def test_null_sender_bounce_is_not_bounced_again(self):
        sink = self.sink(rcpt_map={"bad@dst.test": "550 5.1.1 no such user"})
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port})
        self.send(d, "", ["bad@dst.test"], b"Subject: a bounce\r\n\r\nx\r\n")
        d.wait_log(r"to=<bad@dst\.test>.*status=bounced", t(10))
        d.wait_log(r"no notification sent", t(5))
        d.wait_log(r": removed$", t(5))
        time.sleep(t(0.5))
        self.assertEqual(d.log_lines(r"non-delivery notification: "), [])
        self.assertEqual(sink.messages, [])

    def test_dsn_notify_never_and_success(self):
        sink = self.sink(rcpt_map={"bad@dst.test": "550 5.1.1 no such user"})
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port})
        self.send(d, "s@src.test", ["bad@dst.test"], b"Subject: never\r\n\r\nx\r\n",
                  rcpt_options=["NOTIFY=NEVER"])
        d.wait_log(r"to=<bad@dst\.test>.*status=bounced", t(10))
        d.wait_log(r": removed$", t(5))
        self.assertEqual(d.log_lines(r"notification: "), [])
        # NOTIFY=SUCCESS to a server without DSN: we report "relayed" ourselves
        self.send(d, "s@src.test", ["ok@dst.test"], b"Subject: success\r\n\r\nx\r\n",
                  rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;ok@dst.test"])
        d.wait_log(r"sender delivery status notification: [0-9A-F]+$", t(10))
        msgs = sink.wait_messages(2, t(10))
        dsn = [m for m in msgs if m.mail_from == ""]
        self.assertEqual(len(dsn), 1, msgs)
        msg = email.message_from_bytes(dsn[0].data, policy=email.policy.default)
        self.assertEqual(msg["Subject"], "Successful Mail Delivery Report")
        status = [dict(b.items()) for b in list(msg.iter_parts())[1].get_payload()]
        self.assertEqual(status[1]["Action"], "relayed")
        self.assertEqual(status[1]["Original-Recipient"], "rfc822;ok@dst.test")
        self.assertEqual(status[1]["Status"], "2.0.0")

    def test_dsn_passed_through_when_offered(self):
        sink = self.sink(dsn=True)
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port})
        self.send(d, "s@src.test", ["ok@dst.test"], b"Subject: dsn\r\n\r\nx\r\n",
                  mail_options=["RET=HDRS", "ENVID=abc+2Bdef"],
                  rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig@dst.test"])
        m = sink.wait_messages(1, t(10))[0]
        self.assertIn("RET=HDRS", m.mail_params)
        self.assertIn("ENVID=abc+2Bdef", m.mail_params)
        self.assertIn("NOTIFY=SUCCESS,FAILURE", m.rcpt_params[0])
        self.assertIn("ORCPT=rfc822;orig@dst.test", m.rcpt_params[0])
        d.wait_log(r": removed$", t(5))
        # the next hop reports success now: no notification of our own
        self.assertEqual(d.log_lines(r"notification: "), [])

    def test_kill_9_after_partial_delivery_delivers_only_the_rest(self):
        sink = self.sink(rcpt_map={"later@dst.test": "451 4.2.0 mailbox busy"})
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port, "minimal_backoff_time": "1h",
                         "queue_run_delay": "1h"})
        self.send(d, "s@src.test", ["now@dst.test", "later@dst.test"], b"Subject: crash\r\n\r\nx\r\n")
        d.wait_log(r"to=<now@dst\.test>.*status=sent", t(10))
        d.wait_log(r"to=<later@dst\.test>.*status=deferred", t(10))
        # the status file is written after the results; give it a moment, then crash
        qid = next(iter(d.queued_ids() - {i for i in d.queued_ids() if i.endswith(".st")}))
        deadline = time.monotonic() + t(5)
        while qid + ".st" not in d.queued_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        d.kill()
        sink.rcpt_map.clear()
        d.start()
        self.mtactl(d, "flush")
        d.wait_log(r"to=<later@dst\.test>.*status=sent", t(15))
        msgs = sink.wait_messages(2, t(5))
        self.assertEqual([m.rcpts for m in msgs], [["now@dst.test"], ["later@dst.test"]])
        d.wait_log(r"\b%s: removed$" % qid, t(5))

    def test_sigterm_waits_for_the_reply_to_the_final_dot(self):
        # SIGTERM while the server holds the whole message: the reply is read, the
        # recipient logged sent and the message removed, so the restart sends nothing
        sink = SlowDotSink("127.0.0.1", 0, dot_delay=2.0).start()
        self.addCleanup(sink.stop)
        settings = {"smart_relay": "[127.0.0.1]:%d" % sink.port}
        settings.update(FAST_RETRY)
        d = self.daemon(settings)
        self.send(d, "s@src.test", ["r@dst.test"], b"Subject: slow\r\n\r\nx\r\n")
        self.assertTrue(sink.at_dot.wait(t(10)), "the message never reached the sink")
        self.assertEqual(d.stop(), 0, d.stderr()[-2000:])
        self.assertEqual(len(d.log_lines(SENT_RE % ("r@dst\\.test", sink.port))), 1,
                         d.maillog())
        self.assertEqual(d.queued_ids(), set())
        d.start()
        time.sleep(t(2))
        self.assertEqual(len(sink.messages), 1)

    def test_bounce_made_during_stop_is_sent_once(self):
        # the reply to the final dot is a 5xx that arrives after SIGTERM: the bounce
        # is queued before the daemon exits and the restart does not bounce again
        sink = SlowDotSink("127.0.0.1", 0, dot_delay=2.0,
                           replies={"dot": ["554 5.7.1 rejected by content filter", None]}).start()
        self.addCleanup(sink.stop)
        settings = {"smart_relay": "[127.0.0.1]:%d" % sink.port}
        settings.update(FAST_RETRY)
        d = self.daemon(settings)
        self.send(d, "s@src.test", ["r@dst.test"], b"Subject: slow bounce\r\n\r\nx\r\n")
        self.assertTrue(sink.at_dot.wait(t(10)), "the message never reached the sink")
        self.assertEqual(d.stop(), 0, d.stderr()[-2000:])
        self.assertEqual(len(d.log_lines(r"to=<r@dst\.test>, .*status=bounced")), 1, d.maillog())
        self.assertEqual(len(d.log_lines(r"sender non-delivery notification: ")), 1, d.maillog())
        self.assertEqual(len(d.queued_ids()), 1)  # the bounce only
        d.start()
        msgs = sink.wait_messages(1, t(10))
        time.sleep(t(2))
        self.assertEqual([(m.mail_from, m.rcpts) for m in sink.messages], [("", ["s@src.test"])],
                         msgs)
        self.assertEqual(len(d.log_lines(r"sender non-delivery notification: ")), 1, d.maillog())

    def test_status_file_moves_with_a_message_in_the_wrong_directory(self):
        # recovery moves a message found in the wrong queue/X directory: its status
        # file goes along, so the recipient already delivered is not sent again
        sink = self.sink(rcpt_map={"later@dst.test": "451 4.2.0 mailbox busy"})
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port, "minimal_backoff_time": "1h",
                         "queue_run_delay": "1h"})
        self.send(d, "s@src.test", ["now@dst.test", "later@dst.test"], b"Subject: moved\r\n\r\nx\r\n")
        d.wait_log(r"to=<later@dst\.test>.*status=deferred", t(10))
        qid = next(iter(d.queued_ids()))
        path = d.spool_files()[qid]
        deadline = time.monotonic() + t(5)
        while not os.path.exists(path + ".st") and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(path + ".st"))
        d.kill()
        wrong = os.path.join(d.queue_dir(), "%X" % ((int(qid[-1], 16) + 1) % 16))
        for suffix in ("", ".st"):
            os.rename(path + suffix, os.path.join(wrong, qid + suffix))
        sink.rcpt_map.clear()
        d.start()
        self.mtactl(d, "flush")
        d.wait_log(r"to=<later@dst\.test>.*status=sent", t(15))
        d.wait_log(r"\b%s: removed$" % qid, t(5))
        self.assertEqual([m.rcpts for m in sink.messages], [["now@dst.test"], ["later@dst.test"]])
        corrupt = os.path.join(d.data_volume, "corrupt")
        self.assertEqual(os.listdir(corrupt) if os.path.isdir(corrupt) else [], [])

    def test_kill_9_with_queued_mail_loses_nothing(self):
        port = mtatest.free_port()
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % port})
        for i in range(5):
            self.send(d, "s@src.test", ["r%d@dst.test" % i], b"Subject: %d\r\n\r\nx\r\n" % i)
        d.wait_log(r"status=deferred", t(10), count=5)
        d.kill()
        sink = self.sink(port=port)
        # deferred mail keeps its retry time across a restart (docs/spool-format.md), but
        # never waits longer than maximal_backoff_time from the start: 2s here
        d.user_settings.update(FAST_RETRY)
        d.start()
        self.assertEqual(len(sink.wait_messages(5, t(15))), 5)
        self.assertEqual(sorted(m.rcpts[0] for m in sink.messages),
                         ["r%d@dst.test" % i for i in range(5)])

    def test_pflogsumm_counts(self):
        if not shutil.which("pflogsumm"):
            self.skipTest("pflogsumm is not installed (apt-get install -y pflogsumm)")
        sink = self.sink(rcpt_map={"bad@dst.test": "550 5.1.1 no such user"})
        port_down = mtatest.free_port()
        d = self.daemon({"smart_relay": "[127.0.0.1]:%d" % sink.port})
        for i in range(3):
            self.send(d, "s@src.test", ["ok%d@dst.test" % i], b"Subject: ok\r\n\r\nx\r\n")
        self.send(d, "s@src.test", ["bad@dst.test"], b"Subject: bad\r\n\r\nx\r\n")
        d.wait_log(r"status=sent", t(10), count=4)  # 3 + the bounce to s@src.test
        d.wait_log(r"status=bounced", t(10))
        d.stop()
        # a second daemon on the same log shape with a dead upstream gives a deferral
        d2 = self.daemon({"smart_relay": "[127.0.0.1]:%d" % port_down}, name="mtadown")
        self.send(d2, "s@src.test", ["later@dst.test"], b"Subject: later\r\n\r\nx\r\n")
        d2.wait_log(r"status=deferred", t(10))
        d2.stop()
        log = os.path.join(self.tmp, "all.log")
        with open(log, "w") as f:
            f.write(d.maillog())
            f.write(d2.maillog())
        out = subprocess.run(["pflogsumm", "-e", log], capture_output=True,
                             text=True, timeout=60).stdout

        def count(label):
            m = re.search(r"^\s*(\d+)\s+%s\b" % label, out, re.M)
            self.assertIsNotNone(m, "no %r in pflogsumm output:\n%s" % (label, out))
            return int(m.group(1))

        self.assertEqual(count("received"), 5)   # 4 + 1 from clients (bounces are not "received")
        self.assertEqual(count("delivered"), 4)  # 3 + the bounce message
        self.assertEqual(count("deferred"), 1)
        self.assertEqual(count("bounced"), 1)


if __name__ == "__main__":
    os.environ.setdefault("MTA_SRCDIR", os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    mtatest.main()
