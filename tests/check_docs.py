#!/usr/bin/env python3
"""check_docs.py - docs/configuration.md must show exactly the settings table that
`mtactl settings` prints (the code's CONF_SETTINGS table is the source of truth).

usage: check_docs.py PATH-TO-MTACTL PATH-TO-DOC [--update]
Exit 0 when the table between <!-- settings:begin --> and <!-- settings:end -->
equals the program's output, else 1 with a unified diff. --update rewrites the
doc's table from the program instead (review the change before committing it).
"""
import difflib
import subprocess
import sys

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"


def main(argv):
    args = [a for a in argv[1:] if a != "--update"]
    update = len(args) != len(argv) - 1
    if len(args) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    mtactl, doc = args
    res = subprocess.run([mtactl, "settings"], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        print(f"{mtactl} settings failed ({res.returncode}):\n{res.stderr}", file=sys.stderr)
        return 1
    table = res.stdout.strip("\n")
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        print(f"{doc}: needs exactly one {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    body, tail = rest.split(END, 1)
    if update:
        with open(doc, "w", encoding="utf-8") as f:
            f.write(f"{head}{BEGIN}\n{table}\n{END}{tail}")
        print(f"{doc}: table updated")
        return 0
    documented = body.strip("\n")
    if documented == table:
        print(f"{doc}: settings table matches `mtactl settings`")
        return 0
    diff = difflib.unified_diff(documented.splitlines(), table.splitlines(),
                                f"{doc} (documented)", "mtactl settings (code)", lineterm="")
    print(f"{doc}: the settings table differs from `mtactl settings`; run\n"
          f"  python3 tests/check_docs.py {mtactl} {doc} --update\n", file=sys.stderr)
    print("\n".join(diff), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
