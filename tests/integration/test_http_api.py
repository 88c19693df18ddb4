"""
test_http_api.py - the HTTP service as a user and a program see it: every page
and API endpoint, Basic auth (none, wrong, right; the 401 header), /healthz
without auth, HTTP/1.0 and keep-alive, admin actions (403 without username,
CSRF header, 405 on GET), escaping of a hostile sender and recipient in the
pages and the JSON, the queue search, /api/queue paging, request limits, and /metrics through
promtool (skipped, with the reason, when promtool is not installed).
Not here: start-up errors, free space, StatsD, the browser (their own files).
"""

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import queue_id_of, t  # noqa: E402

HOSTILE_SENDER = "\"<script>alert('s')</script>&\"@evil.example"
HOSTILE_RCPT = "\"<img src=x onerror=alert(1)>\"@victim.example"


def fetch(d, method, path, headers=None, body=None, auth=None):
    """http - one request on a fresh connection: (status, headers dict lower-cased, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", d.ui_port, timeout=t(10))
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, data


def submit(d, sender, rcpts, subject="http test"):
    """submit - queue one message over SMTP; returns its queue ID."""
    with d.client() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s>" % sender)
        assert r.code == 250, str(r)
        for rc in rcpts:
            r = c.cmd("RCPT TO:<%s>" % rc)
            assert r.code == 250, str(r)
        assert c.cmd("DATA").code == 354
        c.send(("Subject: %s\r\nFrom: <x@example.org>\r\n\r\nbody\r\n.\r\n" % subject).encode())
        r = c.reply()
        assert r.code == 250, str(r)
        c.cmd("QUIT")
        return queue_id_of(r)


class HttpOpen(mtatest.MtaTestCase):
    """username empty: no auth, no admin actions."""

    def setUp(self):
        super().setUp()
        # deliveries go to the daemon's held port (bound, never listening: deferred). A port
        # that was merely free once could become this daemon's own SMTP port, and the mail
        # would loop back in under new queue IDs
        self.d = self.daemon()

    def wait_api_queue(self, n):
        deadline = time.monotonic() + t(10)
        while True:
            st, h, body = fetch(self.d, "GET", "/api/queue")
            lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
            if len(lines) >= n or time.monotonic() > deadline:
                return lines
            time.sleep(0.1)

    def test_dashboard_has_the_numbers_in_the_html(self):
        st, h, body = fetch(self.d, "GET", "/")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/html"))
        page = body.decode()
        for label in ("Mqueue messages", "Mqueue kilobytes", "SMTP active sessions", "Received",
                      "Delivered", "Deferred", "Bounced", "Rejected", "CPU time", "Memory (RSS)",
                      "Data volume free", "Log share", "Uptime"):
            self.assertIn(label, page)
        self.assertIn('data-k="mqueue_messages" data-f="int">0<', page)
        self.assertNotIn("http://", page.replace('http://www.w3.org', ''))  # no external assets
        self.assertIn("not connected", page)  # no log terminal
        submit(self.d, "a@example.org", ["b@example.com"])
        submit(self.d, "a@example.org", ["c@example.com"])
        self.wait_api_queue(2)
        page = fetch(self.d, "GET", "/")[2].decode()
        self.assertIn('data-k="mqueue_messages" data-f="int">2<', page)
        self.assertRegex(page, r'data-k="received" data-f="int">[2-9]<')

    def test_assets_are_served_and_csp_forbids_foreign_ones(self):
        for name, ctype in (("style.css", "text/css"), ("app.js", "text/javascript")):
            st, h, body = fetch(self.d, "GET", "/assets/" + name)
            self.assertEqual(st, 200)
            self.assertTrue(h["content-type"].startswith(ctype))
            self.assertGreater(len(body), 500)
        st, h, body = fetch(self.d, "GET", "/")
        self.assertIn("default-src 'none'", h["content-security-policy"])
        self.assertEqual(fetch(self.d, "GET", "/assets/nope.js")[0], 404)
        self.assertEqual(fetch(self.d, "GET", "/assets/../mtad.cf")[0], 404)

    def test_api_stats_fields(self):
        st, h, body = fetch(self.d, "GET", "/api/stats")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("application/json"))
        s = json.loads(body)
        for k in ("mqueue_messages", "mqueue_kilobytes", "smtp_active_sessions", "received",
                  "delivered", "deferred", "bounced", "rejected", "uptime_seconds", "rss_bytes",
                  "log_share_up"):
            self.assertIsInstance(s[k], int, k)
        self.assertIsInstance(s["cpu_seconds"], float)
        self.assertIsInstance(s["data_volume_free_percent"], float)
        self.assertTrue(0 <= s["data_volume_free_percent"] <= 100)
        self.assertEqual(s["dashboard_messages"], [])
        self.assertGreater(s["rss_bytes"], 1 << 20)
        self.assertEqual(s["log_share"], "not connected")
        self.assertEqual(s["hostname"], mtatest.HOSTNAME)
        # queue counters move as mail enters
        before = s["received"]
        submit(self.d, "a@example.org", ["b@example.com"])
        self.wait_api_queue(1)
        s = json.loads(fetch(self.d, "GET", "/api/stats")[2])
        self.assertEqual(s["received"], before + 1)
        self.assertEqual(s["mqueue_messages"], 1)
        self.assertEqual(s["mqueue_kilobytes"], (s["mqueue_bytes"] + 1023) // 1024)
        self.assertGreaterEqual(s["mqueue_kilobytes"], 1)

    def test_commit_latency_parts_fit_in_what_the_client_waited(self):
        """The spool_commit_*_us counters split the time between the end of data and the 250:
        after one message they grow by parts of a whole that the client saw happen."""
        parts = ["spool_commit_%s_us" % p for p in ("wait", "write", "flush", "reply")]
        before = json.loads(fetch(self.d, "GET", "/api/stats")[2])
        with self.d.client() as c:
            c.ehlo()
            self.assertEqual(c.cmd("MAIL FROM:<a@example.org>").code, 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>").code, 250)
            self.assertEqual(c.cmd("DATA").code, 354)
            c.send(b"Subject: timed\r\n\r\nbody\r\n")
            t0 = time.monotonic()
            c.send(b".\r\n")
            r = c.reply()
            waited_us = (time.monotonic() - t0) * 1e6
            self.assertEqual(r.code, 250, str(r))
            c.cmd("QUIT")
        after = json.loads(fetch(self.d, "GET", "/api/stats")[2])
        self.assertEqual(after["spool_commits"], before["spool_commits"] + 1)
        grew = [after[k] - before[k] for k in parts]
        for k, g in zip(parts, grew):
            self.assertGreaterEqual(g, 0, k)
        self.assertGreater(sum(grew), 0)  # at least the hand-back between threads
        fstype = subprocess.run(["stat", "-f", "-c", "%T", self.d.data_volume],
                                capture_output=True, text=True).stdout.strip()
        if fstype != "tmpfs":  # on a disk the flush is a device round trip, never 0 us
            self.assertGreater(grew[2], 0, "a durable commit flushes")
        self.assertLessEqual(sum(grew), waited_us + 1000, (grew, waited_us))
        text = fetch(self.d, "GET", "/metrics")[2].decode()
        for k in parts:  # in seconds there, as Prometheus asks
            m = "mta_%s_seconds_total" % k[:-3]
            self.assertRegex(text, r"(?m)^# TYPE %s counter\n%s \d+\.\d{6}$" % (m, m))

    def test_api_queue_is_postqueue_json_lines(self):
        st, h, body = fetch(self.d, "GET", "/api/queue")
        self.assertEqual((st, body), (200, b""))
        self.assertTrue(h["content-type"].startswith("application/x-ndjson"))
        qid = submit(self.d, "alice@example.org", ["bob@example.com", "carol@example.net"])
        lines = self.wait_api_queue(1)
        self.assertEqual(len(lines), 1)
        m = lines[0]
        self.assertEqual(m["queue_id"], qid)
        self.assertIn(m["queue_name"], ("active", "deferred", "hold"))
        self.assertEqual(m["sender"], "alice@example.org")
        self.assertIsInstance(m["arrival_time"], int)
        self.assertLessEqual(abs(m["arrival_time"] - time.time()), 60)
        self.assertGreater(m["message_size"], 0)
        self.assertEqual([r["address"] for r in m["recipients"]],
                         ["bob@example.com", "carol@example.net"])

    def test_api_queue_pages(self):
        ids = [submit(self.d, "p%d@example.org" % i, ["q%d@example.com" % i]) for i in range(3)]
        everything = [m["queue_id"] for m in self.wait_api_queue(3)]
        self.assertEqual(sorted(everything), sorted(ids))
        st, h, body = fetch(self.d, "GET", "/api/queue?limit=2")
        self.assertEqual(st, 200)
        self.assertEqual([json.loads(x)["queue_id"] for x in body.decode().splitlines()],
                         everything[:2])
        self.assertEqual((h["x-total-count"], h["x-next-after"]), ("3", everything[1]))
        st, h, body = fetch(self.d, "GET", "/api/queue?limit=2&after=" + everything[1])
        self.assertEqual([json.loads(x)["queue_id"] for x in body.decode().splitlines()],
                         everything[2:])
        self.assertEqual(h["x-total-count"], "3")
        self.assertNotIn("x-next-after", h)
        st, h, body = fetch(self.d, "GET", "/api/queue?offset=1&limit=1")
        self.assertEqual([json.loads(x)["queue_id"] for x in body.decode().splitlines()],
                         everything[1:2])
        self.assertEqual(h["x-next-after"], everything[1])
        # paging and search together: the page counts matches only
        st, h, body = fetch(self.d, "GET", "/api/queue?q=q2%40example&limit=1")
        self.assertEqual([json.loads(x)["queue_id"] for x in body.decode().splitlines()], [ids[2]])
        self.assertEqual(h["x-total-count"], "1")
        for bad in ("limit=0", "limit=100001", "limit=x", "offset=-1", "offset=1&after=" + ids[0]):
            st, h, body = fetch(self.d, "GET", "/api/queue?" + bad)
            self.assertEqual(st, 400, bad)
            self.assertIn(b'"error":', body)
        self.assertEqual(fetch(self.d, "GET", "/api/queue?after=NOSUCHID0")[0], 404)

    def test_hostile_addresses_are_escaped(self):
        qid = submit(self.d, HOSTILE_SENDER, [HOSTILE_RCPT])
        lines = self.wait_api_queue(1)
        # JSON: parses and gives back the exact text
        self.assertEqual(lines[0]["sender"], HOSTILE_SENDER)
        self.assertEqual(lines[0]["recipients"][0]["address"], HOSTILE_RCPT)
        for path in ("/queue", "/queue/" + qid, "/queue?q=evil"):
            st, h, body = fetch(self.d, "GET", path)
            self.assertEqual(st, 200, path)
            page = body.decode()
            self.assertNotIn("<script>alert", page, path)
            self.assertNotIn("<img src=x", page, path)
            self.assertIn("&lt;script&gt;alert(&#39;s&#39;)&lt;/script&gt;&amp;", page, path)
            self.assertIn("&lt;img src=x onerror=alert(1)&gt;", page, path)
        # the search box echoes the query escaped
        st, h, body = fetch(self.d, "GET", "/queue?q=%22%3E%3Cscript%3E")
        self.assertIn('value="&quot;&gt;&lt;script&gt;"', body.decode())
        self.assertNotIn('"><script>', body.decode())

    def test_queue_page_search_and_message_page(self):
        q1 = submit(self.d, "alice@example.org", ["bob@example.com"])
        q2 = submit(self.d, "zed@example.org", ["carol@example.net"])
        self.wait_api_queue(2)
        page = fetch(self.d, "GET", "/queue")[2].decode()
        self.assertIn(q1, page)
        self.assertIn(q2, page)
        self.assertIn("in 2 Requests.", page)
        for q, want, not_want in (("alice", q1, q2), ("CAROL@", q2, q1), (q2.lower(), q2, q1)):
            page = fetch(self.d, "GET", "/queue?q=" + q)[2].decode()
            self.assertIn(want, page, q)
            self.assertNotIn(not_want, page, q)
        page = fetch(self.d, "GET", "/queue?q=nobody-matches")[2].decode()
        self.assertIn("No message matches.", page)
        st, h, body = fetch(self.d, "GET", "/queue/" + q1)
        self.assertEqual(st, 200)
        page = body.decode()
        for s in ("alice@example.org", "bob@example.com", "Delivery attempts", "Arrival time"):
            self.assertIn(s, page)
        self.assertEqual(fetch(self.d, "GET", "/queue/NOSUCHID0")[0], 404)
        self.assertEqual(fetch(self.d, "GET", "/queue/bad%3Cid")[0], 404)

    def test_metrics_prometheus_text(self):
        st, h, body = fetch(self.d, "GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/plain; version=0.0.4"))
        text = body.decode()
        for m in ("mta_received_total", "mta_delivered_total", "mta_deferred_total",
                  "mta_bounced_total", "mta_rejected_total", "mta_mqueue_messages",
                  "mta_mqueue_bytes", "mta_smtp_active_sessions",
                  "mta_process_cpu_seconds_total", "mta_process_resident_memory_bytes"):
            self.assertRegex(text, r"(?m)^# TYPE %s (counter|gauge)\n%s \d" % (m, m))
        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool not installed (apt-get install prometheus); format checked above only")
        p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())

    def test_healthz_and_unknown_paths(self):
        st, h, body = fetch(self.d, "GET", "/healthz")
        self.assertEqual((st, body), (200, b"ok\n"))
        self.assertEqual(fetch(self.d, "GET", "/nope")[0], 404)
        self.assertEqual(fetch(self.d, "POST", "/api/stats", body=b"")[0], 405)

    def test_admin_needs_username(self):
        st, h, body = fetch(self.d, "POST", "/api/flush", headers={"X-MTA-Request": "1"}, body=b"")
        self.assertEqual(st, 403)
        self.assertIn("username", json.loads(body)["error"])
        st, h, body = fetch(self.d, "GET", "/api/flush")
        self.assertEqual(st, 405)
        self.assertEqual(h["allow"], "POST")

    def test_http10_and_keepalive(self):
        # HTTP/1.0 by hand: answered as 1.0 and closed
        with socket.create_connection(("127.0.0.1", self.d.ui_port), timeout=t(10)) as s:
            s.sendall(b"GET /api/stats HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b'"mqueue_messages":', body)
        # HTTP/1.1: several requests on one connection
        c = http.client.HTTPConnection("127.0.0.1", self.d.ui_port, timeout=t(10))
        socks = set()
        for path in ("/api/stats", "/", "/metrics", "/healthz"):
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200, path)
            socks.add(c.sock.getsockname())
        self.assertEqual(len(socks), 1, "keep-alive was not kept")
        c.close()

    def test_request_limits(self):
        # a header block beyond 8 KiB is refused and the service stays up
        st, h, body = fetch(self.d, "GET", "/", headers={"X-Big": "a" * 10000})
        self.assertGreaterEqual(st, 400)
        # a body beyond 64 KiB too
        st, h, body = fetch(self.d, "POST", "/api/flush", body=b"x" * 100000)
        self.assertGreaterEqual(st, 400)
        # many connections, opened and closed, do not use up the connection cap
        for _ in range(200):
            c = http.client.HTTPConnection("127.0.0.1", self.d.ui_port, timeout=t(10))
            c.request("GET", "/healthz")
            c.getresponse().read()
            c.close()
        open_conns = []
        for _ in range(150):  # above the cap of 128: the rest get 503, nobody hangs
            c = http.client.HTTPConnection("127.0.0.1", self.d.ui_port, timeout=t(10))
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            self.assertIn(r.status, (200, 503))
            if r.status == 200:
                open_conns.append(c)
            else:
                c.close()
        self.assertLessEqual(len(open_conns), 128)
        for c in open_conns:
            c.close()
        deadline = time.monotonic() + t(5)
        while fetch(self.d, "GET", "/healthz")[0] != 200:
            self.assertLess(time.monotonic(), deadline, "cap not released after close")
            time.sleep(0.1)


class HttpAuth(mtatest.MtaTestCase):
    """username set: Basic auth everywhere but /healthz; admin actions allowed."""

    USER, PASS = "admin", "s3cr:et pw"

    def setUp(self):
        super().setUp()
        self.d = self.daemon(settings={"username": self.USER, "password": self.PASS})
        self.good = "%s:%s" % (self.USER, self.PASS)

    def test_every_path_needs_auth(self):
        for path in ("/", "/queue", "/queue/ABC", "/api/stats", "/api/queue", "/metrics",
                     "/assets/style.css"):
            for auth in (None, "admin:wrong", "Admin:" + self.PASS, self.USER + ":",
                         self.good + "x"):
                st, h, body = fetch(self.d, "GET", path, auth=auth)
                self.assertEqual(st, 401, "%s with %r" % (path, auth))
                self.assertTrue(h["www-authenticate"].startswith('Basic realm="mta"'),
                                h.get("www-authenticate"))
                self.assertNotIn(b"mqueue", body)
            st, h, body = fetch(self.d, "GET", path, auth=self.good)
            self.assertIn(st, (200, 404), path)
        # malformed Authorization headers are just 401
        for v in ("Basic", "Basic !!!", "Bearer abc", "Basic " + "A" * 5000):
            self.assertEqual(fetch(self.d, "GET", "/", headers={"Authorization": v})[0], 401, v)

    def test_healthz_without_auth_reveals_nothing(self):
        st, h, body = fetch(self.d, "GET", "/healthz")
        self.assertEqual((st, body), (200, b"ok\n"))
        self.assertNotIn("www-authenticate", h)

    def test_admin_flush_and_delete(self):
        q1 = submit(self.d, "alice@example.org", ["bob@example.com"])
        q2 = submit(self.d, "alice@example.org", ["carol@example.com"])
        # GET is not an action
        self.assertEqual(fetch(self.d, "GET", "/api/flush", auth=self.good)[0], 405)
        # without auth: 401 before anything else
        self.assertEqual(fetch(self.d, "POST", "/api/flush", headers={"X-MTA-Request": "1"})[0], 401)
        # a form post (what a foreign page can make a browser send) is refused
        st, h, body = fetch(self.d, "POST", "/api/delete?id=" + q1, auth=self.good,
                           headers={"Content-Type": "application/x-www-form-urlencoded"},
                           body=b"id=" + q1.encode())
        self.assertEqual(st, 403)
        st, h, body = fetch(self.d, "POST", "/api/flush", auth=self.good,
                           headers={"X-MTA-Request": "1", "Origin": "http://evil.example"})
        self.assertEqual(st, 403)
        st, h, body = fetch(self.d, "POST", "/api/flush", auth=self.good,
                           headers={"X-MTA-Request": "1"}, body=b"")
        self.assertEqual(st, 200, body)
        self.assertIsInstance(json.loads(body)["flushed"], int)
        deadline = time.monotonic() + t(10)
        while len(self.d.queued_ids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        st, h, body = fetch(self.d, "POST", "/api/delete?id=" + q1, auth=self.good,
                           headers={"X-MTA-Request": "1"}, body=b"")
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body), {"deleted": 1})
        st, h, body = fetch(self.d, "GET", "/api/queue", auth=self.good)
        ids = [json.loads(x)["queue_id"] for x in body.decode().splitlines() if x.strip()]
        self.assertNotIn(q1, ids)
        self.assertIn(q2, ids)
        st, h, body = fetch(self.d, "POST", "/api/delete?id=" + q1, auth=self.good,
                           headers={"X-MTA-Request": "1"}, body=b"")
        self.assertEqual(st, 404)
        st, h, body = fetch(self.d, "POST", "/api/delete", auth=self.good,
                           headers={"X-MTA-Request": "1"}, body=b"")
        self.assertEqual(st, 400)
        # the admin buttons are on the pages only when admin actions exist
        self.assertIn('data-action="flush"', fetch(self.d, "GET", "/queue", auth=self.good)[2].decode())


if __name__ == "__main__":
    mtatest.main()
