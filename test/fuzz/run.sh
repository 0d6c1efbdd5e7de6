#!/bin/sh
# run.sh — build the xstream fuzzer with libFuzzer and run it for a while.
#
# Builds test/fuzz/fuzz_xstream.c straight from the sources it needs into a
# temporary directory, copies the seed corpus there (the repository is never
# written), and fuzzes for FUZZ_SECONDS (default 60). Exits non-zero if the
# fuzzer finds a crash, leak or broken invariant; the temporary directory,
# with the crashing input, is then kept and named.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
seconds=${FUZZ_SECONDS:-60}
CC=${FUZZ_CC:-clang}

work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-fuzz.XXXXXX")
keep=no
cleanup() { [ "$keep" = yes ] || rm -rf "$work"; }
trap cleanup EXIT

# shellcheck disable=SC2046 # pkg-config output is meant to split
"$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION \
    -I"$top/common" $(pkg-config --cflags libxml-2.0) \
    "$here/fuzz_xstream.c" \
    "$top/common/arena.c" "$top/common/buf.c" "$top/common/xml.c" \
    "$top/common/xstream.c" "$top/common/xmpp.c" \
    $(pkg-config --libs libxml-2.0) -o "$work/fuzz_xstream"

mkdir "$work/corpus" "$work/artifacts"
cp "$here"/corpus/* "$work/corpus/"

# Tokens worth trying: markup and the XMPP names around it.
cat > "$work/xml.dict" <<'DICT'
"<"
">"
"</"
"/>"
"='"
"=\""
"'"
"\""
"<![CDATA["
"]]>"
"<!--"
"-->"
"<?xml version='1.0'?>"
"<!DOCTYPE"
"&amp;"
"&lt;"
"&#x"
"&#"
";"
"xmlns='"
"xmlns:"
"xml:lang='"
"stream:stream"
"xmlns:stream='http://etherx.jabber.org/streams'"
"jabber:client"
"<message>"
"</message>"
"<proceed/>"
"<keep>"
"</stream:stream>"
"\xc3\xa9"
"\xf0\x9f\x98\x80"
DICT

status=0
"$work/fuzz_xstream" -max_total_time="$seconds" -max_len=2048 -timeout=20 \
    -rss_limit_mb=2048 -print_final_stats=1 -dict="$work/xml.dict" \
    -artifact_prefix="$work/artifacts/" "$work/corpus" || status=$?

if [ "$status" -ne 0 ] || [ -n "$(ls "$work/artifacts")" ]; then
    keep=yes
    echo "run.sh: the fuzzer failed (status $status); inputs kept in $work/artifacts" >&2
    [ "$status" -ne 0 ] || status=1
fi
exit "$status"
