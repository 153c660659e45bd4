#!/usr/bin/env bash
# Runs every fuzz target of the workspace for SECONDS each (default 60), one after another:
#   decode    crates/logos-wire/fuzz   frames and values off the wire (FrameDecoder, decode_*)
#   manifest  crates/logos-core/fuzz   metadata.json (Manifest::from_json)
#   params    crates/logos-capi/fuzz   the C API's params_json (src/params.rs)
#   config    crates/logoscore/fuzz    logoscore.toml (src/config.rs)
#   envelope  crates/logos-contexts/fuzz  signed delegation envelopes (SignedEnvelope::decode)
#   script    crates/logos-contexts/fuzz  Rhai scripts evaluated under the contexts limits
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (all six targets when none is named)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); on the pinned stable toolchain it runs
# with RUSTC_BOOTSTRAP=1, because cargo-fuzz passes nightly-only flags (-Zsanitizer=address).
# The fuzz crates are not workspace members, so CI never builds them; they share target/fuzz.
# Runs niced: the fuzzers use a whole CPU each.
#
# Corpora live in crates/*/fuzz/corpus/<target> and are kept in git, minimised (`cargo fuzz
# cmin` after a run; commit what it leaves), seeded from the repository (docs/protocol.md
# vectors, modules/*/metadata.json, a few params_json forms, the TOML examples of the docs
# and of src/config.rs); a crash is saved
# in crates/*/fuzz/artifacts/<target>/ and makes this script exit 1. Turn a crash into a unit
# test named issue_10_fuzz_… (or after the issue that found it) next to the code it breaks.
set -euo pipefail

seconds="${1:-60}"
shift || true
only=("$@")
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (whole seconds per target, default 60; targets: decode manifest params config)" >&2
    exit 2
fi
if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz is not installed: run \`cargo install cargo-fuzz --locked\` and try again" >&2
    exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
logs="$root/target/fuzz/logs"
mkdir -p "$logs"
export RUSTC_BOOTSTRAP=1

# Seeds: one file per input, named by content so reruns add nothing twice.
seed() { # dir, content
    mkdir -p "$1"
    printf '%s' "$2" >"$1/seed-$(printf '%s' "$2" | sha1sum | cut -c1-16)"
}
if command -v python3 >/dev/null; then
    python3 - "$root" <<'PY'
import hashlib, os, re, sys
root = sys.argv[1]
out = os.path.join(root, "crates/logos-wire/fuzz/corpus/decode")
os.makedirs(out, exist_ok=True)
text = open(os.path.join(root, "docs/protocol.md"), encoding="utf-8").read()
for block in re.findall(r"```vector\n(.*?)```", text, re.S):
    hexes, in_hex = [], False
    for line in block.split("\n"):
        if line.startswith("hex:"):
            in_hex = True; hexes.append(line[4:]); continue
        if in_hex and line.startswith(" "):
            hexes.append(line); continue
        in_hex = False
    data = bytes.fromhex("".join("".join(hexes).split()))
    if data:
        name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
        open(os.path.join(out, name), "wb").write(data)
PY
fi
mkdir -p "$root/crates/logos-core/fuzz/corpus/manifest"
for meta in "$root"/modules/*/metadata.json; do
    seed "$root/crates/logos-core/fuzz/corpus/manifest" "$(cat "$meta")"
done
for p in '[]' '["ada", 2, 1.5, true, null]' '[{"$bytes": "00ff"}]' \
    '[{"name": "a", "value": "7", "type": "int"}]' '[{"value": "1e3", "type": "qreal"}]' \
    '[{"name": "m", "value": {"k": [1]}, "type": "QVariantMap"}]' '[18446744073709551615, -9223372036854775808]'; do
    seed "$root/crates/logos-capi/fuzz/corpus/params" "$p"
done

if command -v python3 >/dev/null; then
    python3 - "$root" <<'PY'
import hashlib, os, re, sys
root = sys.argv[1]
out = os.path.join(root, "crates/logoscore/fuzz/corpus/config")
os.makedirs(out, exist_ok=True)
texts = []
for doc in ["README.md"] + [os.path.join("docs", d) for d in os.listdir(os.path.join(root, "docs"))]:
    path = os.path.join(root, doc)
    if path.endswith(".md"):
        texts += re.findall(r"```toml\n(.*?)```", open(path, encoding="utf-8").read(), re.S)
src = open(os.path.join(root, "crates/logoscore/src/config.rs"), encoding="utf-8").read()
for block in re.findall(r"//! ```toml\n(.*?)//! ```", src, re.S):
    texts.append("".join(l[4:] + "\n" for l in block.split("\n") if l.startswith("//! ")))
for t in texts:
    data = t.encode()
    open(os.path.join(out, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb").write(data)
PY
fi

for s in 'put("a", 1)' 'let n = get("count") ?? 0; put("count", n + 1); n' \
    'fn f(n) { if n > 0 { f(n - 1) } else { 0 } } f(10)' 'let a = []; for i in 0..10 { a.push(i); } a' \
    'import "x" as y; y::z()' 'let m = #{a: 1}; m.a + params'; do
    seed "$root/crates/logos-contexts/fuzz/corpus/script" "$s"
done

failed=0
for entry in "logos-wire decode" "logos-core manifest" "logos-capi params" "logoscore config" "logos-contexts envelope" "logos-contexts script"; do
    read -r crate target <<<"$entry"
    if [ "${#only[@]}" -gt 0 ] && ! printf '%s\n' "${only[@]}" | grep -qx "$target"; then
        continue
    fi
    dir="$root/crates/$crate"
    log="$logs/$target.log"
    echo "== $target ($crate): $seconds s, log in ${log#"$root"/}"
    set +e
    (cd "$dir" && nice -n 10 cargo fuzz run "$target" --target-dir "$root/target/fuzz" -- \
        -max_total_time="$seconds" -print_final_stats=1) >"$log" 2>&1
    status=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n1)
    files=$(find "$dir/fuzz/corpus/$target" -type f | wc -l)
    echo "   exit $status, ${runs:-?} runs, $cov, $files corpus files"
    if [ "$status" -ne 0 ]; then
        failed=1
        grep -E 'panicked|ERROR: |SUMMARY|Test unit written' "$log" | head -n 10 || true
        ls "$dir/fuzz/artifacts/$target" 2>/dev/null | sed 's/^/   artifact: /' || true
    fi
done
exit "$failed"
