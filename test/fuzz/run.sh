#!/bin/sh
# run.sh — build the libFuzzer targets and run each for a while.
#
# Every target test/fuzz/fuzz_NAME.c is built straight from the sources it
# needs (the table below: one line per target) into a temporary directory,
# with its seed corpus test/fuzz/corpus-NAME/ copied there (the repository
# is never written) and its dictionary test/fuzz/DICT.dict if it has one.
# The targets run one after the other; FUZZ_SECONDS (default 60) is the
# total, shared equally among them. FUZZ_TARGETS="jid config" runs only
# those. Exits non-zero if a fuzzer finds a crash, leak or broken
# invariant; the temporary directory, with the crashing inputs in
# NAME/artifacts/ and the fuzzer's output in NAME/log, is then kept and
# named, and the end of each failed target's report printed last. FUZZ_CC
# picks the compiler (default clang).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
CC=${FUZZ_CC:-clang}

# NAME MAX-LEN DICT PKG-CONFIG-PACKAGES SOURCES... (relative to the top;
# test/fuzz/fuzz_NAME.c is added). PACKAGES separated by commas; DICT and
# PACKAGES "-" for none.
TARGETS='
xstream      2048 xml    libxml-2.0 common/arena.c common/buf.c common/xml.c common/xstream.c common/xmpp.c
xml_fragment 2048 xml    libxml-2.0 common/arena.c common/buf.c common/xml.c common/xstream.c common/xmpp.c
jid          1024 jid    libidn     common/jid.c common/log.c common/map.c
saslmsg      1200 sasl   -          c2s/saslmsg.c
config       8192 config libxml-2.0 common/config.c common/settings.c common/log.c common/map.c
json         4096 -      -          common/json.c common/buf.c common/log.c common/map.c
route        2048 xml    libxml-2.0 router/header.c common/role.c common/arena.c common/buf.c common/xml.c common/xstream.c common/xmpp.c
'

all=$(printf '%s\n' "$TARGETS" | awk 'NF { print $1 }')
selected=${FUZZ_TARGETS:-$all}
count=0
for name in $selected; do
    if ! printf '%s\n' "$all" | grep -qx "$name"; then
        echo "run.sh: no fuzz target '$name' (there are: $(printf '%s' "$all" | tr '\n' ' '))" >&2
        exit 2
    fi
    count=$((count + 1))
done
[ "$count" -gt 0 ] || { echo "run.sh: FUZZ_TARGETS names no target" >&2; exit 2; }
seconds=$(( ${FUZZ_SECONDS:-60} / count ))
[ "$seconds" -ge 1 ] || seconds=1

work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-fuzz.XXXXXX")
keep=no
cleanup() { [ "$keep" = yes ] || rm -rf "$work"; }
trap cleanup EXIT

# The line of the table for target $1, split into $1 (name), $2 (max
# length), $3 (dictionary), $4 (packages), $5... (sources).
line_of() { printf '%s\n' "$TARGETS" | awk -v n="$1" '$1 == n'; }

build() {
    # shellcheck disable=SC2046 # the line is meant to split
    set -- $(line_of "$1")
    target=$1 pkgs=$4
    shift 4
    sources=
    for s in "$@"; do sources="$sources $top/$s"; done
    cflags='' libs=''
    if [ "$pkgs" != - ]; then
        pkgs=$(printf '%s' "$pkgs" | tr , ' ')
        # shellcheck disable=SC2086 # several packages, space-separated
        cflags=$(pkg-config --cflags $pkgs) libs=$(pkg-config --libs $pkgs)
    fi
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    if [ -d "$here/corpus-$target" ]; then cp "$here/corpus-$target"/* "$work/$target/corpus/"; fi
    # shellcheck disable=SC2086 # flags and source lists are meant to split
    "$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -D_GNU_SOURCE \
        -I"$top/common" -I"$top/storage" -I"$top/c2s" -I"$top/router" $cflags \
        "$here/fuzz_$target.c" $sources $libs -o "$work/$target/fuzz_$target"
}

for name in $selected; do
    echo "run.sh: building fuzz_$name"
    build "$name"
done

failed=
for name in $selected; do
    # shellcheck disable=SC2046 # the line is meant to split
    set -- $(line_of "$name")
    max_len=$2 dict=$3
    set -- -max_total_time="$seconds" -max_len="$max_len" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/$name/artifacts/"
    if [ -f "$here/$dict.dict" ]; then set -- "$@" -dict="$here/$dict.dict"; fi
    echo "run.sh: fuzz_$name for ${seconds}s"
    status=0
    "$work/$name/fuzz_$name" "$@" "$work/$name/corpus" >"$work/$name/log" 2>&1 || status=$?
    grep -E '^(Done|stat::)' "$work/$name/log" || :
    if [ "$status" -ne 0 ] || [ -n "$(ls "$work/$name/artifacts")" ]; then
        echo "run.sh: fuzz_$name failed (status $status); inputs kept in $work/$name/artifacts" >&2
        failed="$failed $name"
    fi
done

if [ -n "$failed" ]; then
    keep=yes
    # The reports last, where CI's tail shows them.
    for name in $failed; do
        echo "---- fuzz_$name: the end of $work/$name/log" >&2
        grep -v -E '^#[0-9]+' "$work/$name/log" | tail -n 40 >&2
    done
    echo "run.sh: failed:$failed; everything kept in $work" >&2
    exit 1
fi
echo "run.sh: $count targets, ${seconds}s each: no crash, leak or broken invariant"
