#!/usr/bin/env python3
"""check-tree.py - the rules of the source tree that CI enforces (issue 14).

  scripts/check-tree.py [--only NAME ...]      run the checks, exit 1 on any failure

Checks (each can be run alone with --only):
  layers   every #include points down the layering of docs/architecture.md: core includes
           only core headers, queue only queue and core, smtpd/relay/stats only their own,
           queue's and core's; the programs (src/*.c) everything. A header in include/mta/
           belongs to the folder whose sources implement it (HEADER_OWNER below).
  size     no source file over 800 lines, except the ones listed in scripts/size-baseline.txt,
           which may not grow past the size written there (they are to be split).
  format   clang-format (Debian 12's, 14) with the repo's .clang-format leaves every C file
           unchanged.
  cppcheck no cppcheck finding beyond scripts/cppcheck-baseline.txt (file, id and message;
           line numbers are left out so that moving code does not count as new).
  commits  every commit after the one named in scripts/commit-baseline.txt has a subject of
           at most 72 characters, not two subjects joined with ";", then a blank line.
  tests    every tests/integration/test_*.py ends in mtatest.main(), whose MTA_REQUIRE_ALL=1
           (CI) turns a skipped test into a failure: a bare unittest.main() would let a test
           skip in CI when a tool it needs was never installed.
"""

import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER = {"core": 1, "queue": 2, "smtpd": 3, "relay": 3, "stats": 3}
MAX_LINES = 800
C_DIRS = ("src", "include", "tests/unit", "tests/fuzz", "bench")
# include/mta/NAME.h -> the folder that implements it, where the stem does not say it
HEADER_OWNER = {"stats": "stats", "nexthop": "core", "text": "core", "cidr": "core"}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def c_files(dirs):
    """c_files - every .c and .h below DIRS (relative to ROOT), sorted."""
    out = []
    for d in dirs:
        for base, _, names in os.walk(os.path.join(ROOT, d)):
            out += [os.path.join(base, n) for n in names if n.endswith((".c", ".h"))]
    return sorted(out)


def header_owner(stem):
    """header_owner - the src/ folder that implements include/mta/STEM.h, or None."""
    if stem in HEADER_OWNER:
        return HEADER_OWNER[stem]
    for folder in LAYER:
        d = os.path.join(ROOT, "src", folder)
        for n in os.listdir(d):
            if n.endswith(".c") and (n[:-2] == stem or n.startswith(stem + "_")):
                return folder
    return None


def check_layers():
    errors = []
    owners = {}
    for h in os.listdir(os.path.join(ROOT, "include", "mta")):
        stem = h[:-2]
        owners[h] = header_owner(stem)
        if owners[h] is None:
            errors.append("include/mta/%s: no folder implements it (add it to HEADER_OWNER)" % h)
    for path in c_files(["src"]):
        rel = os.path.relpath(path, ROOT)
        parts = rel.split(os.sep)
        if len(parts) == 2:
            continue  # a program: src/mtad.c and friends wire everything
        folder = parts[1]
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for inc in INCLUDE_RE.findall(text):
            if inc.startswith("mta/"):
                owner = owners.get(inc[4:])
                if owner is None:
                    errors.append("%s: includes %s, which is not in include/mta/" % (rel, inc))
                elif owner != folder and LAYER[owner] >= LAYER[folder]:
                    errors.append("%s: includes %s (%s, layer %d) from %s (layer %d): includes "
                                  "point down only" % (rel, inc, owner, LAYER[owner], folder,
                                                       LAYER[folder]))
            elif "/" in inc or not os.path.exists(os.path.join(os.path.dirname(path), inc)):
                errors.append("%s: includes \"%s\", not a header of its own folder" % (rel, inc))
    return errors


def read_baseline(name):
    path = os.path.join(ROOT, "scripts", name)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [ln.rstrip("\n") for ln in f if ln.strip() and not ln.startswith("#")]


def check_size():
    allowed = {}
    for ln in read_baseline("size-baseline.txt"):
        n, p = ln.split(None, 1)
        allowed[p] = int(n)
    errors = []
    for path in c_files(["src", "include"]):
        rel = os.path.relpath(path, ROOT)
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        limit = max(MAX_LINES, allowed.get(rel, 0))
        if n > limit:
            errors.append("%s: %d lines, more than %d%s" % (
                rel, n, limit, " (its baseline)" if rel in allowed else ": split it by purpose"))
    return errors


def check_format():
    files = c_files(C_DIRS)
    p = subprocess.run(["clang-format", "--dry-run", "--Werror", "--style=file"] + files,
                       cwd=ROOT, capture_output=True, text=True)
    if p.returncode == 0:
        return []
    bad = sorted({ln.split(":")[0] for ln in p.stderr.splitlines() if ": error:" in ln})
    return ["%s: not clang-formatted (run clang-format -i on it)" % os.path.relpath(b, ROOT)
            for b in bad] or [p.stderr.strip()[:2000]]


def cppcheck_findings():
    # cppcheck reads no system header; without sys/queue.h's macros every TAILQ_HEAD is a
    # "syntax error" that hides the rest of the file
    queue_h = [h for h in ("/usr/include/x86_64-linux-gnu/sys/queue.h",
                           "/usr/include/aarch64-linux-gnu/sys/queue.h",
                           "/usr/include/sys/queue.h") if os.path.exists(h)][:1]
    p = subprocess.run(["cppcheck", "--enable=warning,performance,portability", "--std=c11",
                        "--quiet", "--inline-suppr"] + ["--include=" + h for h in queue_h] +
                       ["--template={file}\t{id}\t{message}", "-I", "include", "src"],
                       cwd=ROOT, capture_output=True, text=True)
    return sorted(ln for ln in p.stderr.splitlines() if ln.count("\t") == 2)


def check_cppcheck():
    base = list(read_baseline("cppcheck-baseline.txt"))
    errors = []
    for f in cppcheck_findings():
        if f in base:
            base.remove(f)  # each baseline line excuses one finding
        else:
            errors.append("cppcheck: " + f.replace("\t", ": "))
    return errors


def check_commits():
    base = read_baseline("commit-baseline.txt")
    if not base:
        return []
    p = subprocess.run(["git", "log", "--format=%H%x00%B%x01", base[0] + "..HEAD"], cwd=ROOT,
                       capture_output=True, text=True)
    if p.returncode != 0:
        return ["commits: git log failed: " + p.stderr.strip()]
    errors = []
    for entry in p.stdout.split("\x01"):
        entry = entry.strip("\n")
        if not entry:
            continue
        sha, _, msg = entry.partition("\x00")
        lines = msg.split("\n")
        subject = lines[0]
        why = []
        if len(subject) > 72:
            why.append("subject of %d characters (at most 72)" % len(subject))
        if ";" in subject:
            why.append("subjects joined with ';'")
        if len(lines) > 1 and lines[1].strip():
            why.append("no blank line after the subject")
        if why:
            errors.append("commit %s \"%s\": %s" % (sha[:12], subject[:60], ", ".join(why)))
    return errors


def check_tests():
    errors = []
    d = os.path.join(ROOT, "tests", "integration")
    for name in sorted(os.listdir(d)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        with open(os.path.join(d, name), encoding="utf-8") as f:
            text = f.read()
        if '\nif __name__ == "__main__":\n' not in text or \
                not text.rstrip().endswith("\n    mtatest.main()"):
            errors.append("tests/integration/%s: does not end in mtatest.main() (a skip in CI "
                          "would pass unseen)" % name)
    return errors


CHECKS = {"layers": check_layers, "size": check_size, "format": check_format,
          "cppcheck": check_cppcheck, "commits": check_commits, "tests": check_tests}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", choices=sorted(CHECKS), default=list(CHECKS))
    ap.add_argument("--print-cppcheck", action="store_true",
                    help="print today's findings (to make a new baseline) and exit")
    args = ap.parse_args()
    if args.print_cppcheck:
        print("\n".join(cppcheck_findings()))
        return 0
    failed = 0
    for name in args.only:
        errors = CHECKS[name]()
        print("check-tree: %-8s %s" % (name, "ok" if not errors else "%d problem(s)" % len(errors)))
        for e in errors:
            print("  " + e)
        failed |= bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
