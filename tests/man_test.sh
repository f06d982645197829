#!/bin/bash
# man_test: checks that the man pages document every option each tool's --help lists, and
# that the EXIT STATUS section, the --help footer and README's table list every exit code of
# the family (lib/base/error.h: 0..10 and 130).
# Usage: tests/man_test.sh MANDIR README TOOL...
#   e.g. tests/man_test.sh man README.md bazel-bin/tools/dlsend/dlsend bazel-bin/tools/dlrecv/dlrecv
# Prints what is missing and exits 1 if anything is.
set -u

if [ $# -lt 3 ]; then
  echo "usage: $0 MANDIR README TOOL..." >&2
  exit 2
fi
mandir=$1
readme=$2
shift 2
exit_codes="0 1 2 3 4 5 6 7 8 9 10 130"
missing=0

miss() {
  echo "MISSING: $*"
  missing=1
}

for tool in "$@"; do
  name=$(basename "$tool")
  page="$mandir/$name.1"
  if [ ! -x "$tool" ]; then
    miss "$name: no executable at $tool"
    continue
  fi
  if [ ! -f "$page" ]; then
    miss "$name: no man page at $page"
    continue
  fi
  help=$("$tool" --help 2>&1)
  if [ -z "$help" ]; then
    miss "$name: --help printed nothing"
    continue
  fi
  # The --help footer: "Exit status: 0 ok, 1 ..., 130 interrupted".
  footer=$(printf '%s\n' "$help" | sed -n '/^Exit status:/,/^Signals:/p' | tr '\n' ' ')
  for code in $exit_codes; do
    if ! printf '%s\n' "$footer" | grep -qE "(:|,) ${code} "; then
      miss "$name: exit code $code is not in the exit status footer of --help"
    fi
  done
  # A tool with subcommands (pymodaq-emu): each subcommand's --help is checked too.
  subs=$(printf '%s\n' "$help" | awk '/^Subcommands:/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { on = 0 }')
  for sub in $subs; do
    help="$help
$("$tool" "$sub" --help 2>&1)"
  done
  # The page as plain text for matching: roff's \- is a plain hyphen here.
  text=$(sed -e 's/\\-/-/g' "$page")

  longs=$(printf '%s\n' "$help" | grep -oE -- '--[a-z][a-z0-9-]*' | sed 's/-*$//' | sort -u)
  shorts=$(printf '%s\n' "$help" | grep -oE -- '(^|[[:space:],])-[A-Za-z]([,[:space:]]|$)' |
           grep -oE -- '-[A-Za-z]' | sort -u)
  n=0
  for opt in $longs; do
    n=$((n + 1))
    # The whole option, not a prefix of a longer one (--wait must not match --waiting).
    if ! printf '%s\n' "$text" | grep -qE -- "(^|[^A-Za-z0-9-])${opt}([^A-Za-z0-9-]|\$)"; then
      miss "$name: option $opt is in --help but not in $page"
    fi
  done
  for opt in $shorts; do
    n=$((n + 1))
    if ! printf '%s\n' "$text" | grep -qE -- "(^|[^A-Za-z0-9-])${opt}([^A-Za-z0-9-]|\$)"; then
      miss "$name: option $opt is in --help but not in $page"
    fi
  done
  if [ "$n" -lt 5 ]; then
    miss "$name: found only $n options in --help; is the parsing broken?"
  fi

  # EXIT STATUS: from its .SH to the next .SH; each code must be a tag (.TP/.IP item).
  section=$(printf '%s\n' "$text" | awk '/^\.SH/ { on = ($0 ~ /^\.SH +"?EXIT STATUS"?/); next } on')
  if [ -z "$section" ]; then
    miss "$name: no EXIT STATUS section in $page"
    continue
  fi
  tags=$(printf '%s\n' "$section" | awk '
    /^\.TP/ { tag = 1; next }
    /^\.IP/ { sub(/^\.IP +/, ""); print; next }
    tag { print; tag = 0 }' | sed -E 's/^\.[A-Z]+ +//; s/\\f[BIRP]//g; s/"//g')
  for code in $exit_codes; do
    if ! printf '%s\n' "$tags" | grep -qE "^[[:space:]]*${code}([^0-9]|\$)"; then
      miss "$name: exit code $code is not listed in the EXIT STATUS section of $page"
    fi
  done
  echo "$name: checked $n options and exit codes $exit_codes against $page"
done

if [ -n "$readme" ]; then
  for code in $exit_codes; do
    if ! grep -qE "^\| *${code} *\|" "$readme"; then
      miss "README: exit code $code is not in the exit status table of $readme"
    fi
  done
fi

if [ "$missing" -ne 0 ]; then
  echo "FAIL: the man pages miss something (see above)"
  exit 1
fi
echo "PASS"
