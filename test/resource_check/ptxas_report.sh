#!/bin/sh
# CUDA compiler launcher of a beam build with tests (ptxas_reports.cmake): runs the compile
# command "$@" and, when it names an output (-o <object>), keeps the compiler's stderr, the
# ptxas resource report (--resource-usage) included, in <object>.ptxas for the kernel
# resource check; the report is touched last, so it is never older than the object. The
# report's lines are held back from the build log; every other line of stderr (warnings,
# errors) passes through. A failed or interrupted compile leaves no report behind.
object=""
previous=""
for arg in "$@"; do
  [ "$previous" = "-o" ] && object=$arg
  previous=$arg
done
[ -n "$object" ] || exec "$@"
report="$object.ptxas"
partial="$report.partial.$$"
trap 'rm -f "$partial"' EXIT
trap 'exit 130' INT TERM HUP
rm -f "$report"
"$@" 2>"$partial"
status=$?
grep -v -E '^ptxas info +:|^ +[0-9]+ bytes stack frame, ' "$partial" >&2
if [ "$status" -eq 0 ]; then
  mv -f "$partial" "$report" && touch "$report"
fi
exit "$status"
