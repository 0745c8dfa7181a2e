#!/usr/bin/env bash
# Coverage-guided fuzzing of every wire parser of pmip-common with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh                 every target for 60 s each, one after the other
#   scripts/fuzz.sh TARGET [SECS]   one target (mh ike ike_sk eap diameter esp gre)
#   scripts/fuzz.sh all SECS        every target for SECS seconds each
#
# Installs cargo-fuzz into ~/.cargo/bin the first time (crates.io). cargo-fuzz builds with
# nightly-only flags (-Zsanitizer=address, -Cpasses=sancov-module); this machine has only
# stable Rust, so the build runs with RUSTC_BOOTSTRAP=1, which lets stable rustc accept
# them. Builds go to fuzz/target, away from the workspace's target/.
#
# One fuzzing process at a time, one core: libFuzzer's default without -jobs/-workers
# (with -jobs=1 it would fork the same single worker and log to ./fuzz-0.log).
# New inputs are kept in fuzz/target/corpus (not committed); fuzz/corpus/<target> holds
# the committed seeds, read only. A crash lands in fuzz/artifacts/<target>/: fix the bug,
# then copy the input to fuzz/regressions/<target>/ so common/tests/fuzz_regressions.rs
# replays it on every `cargo test` (no nightly needed).
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

TARGETS=(mh ike ike_sk eap diameter esp gre)
target="${1:-all}"
seconds="${2:-60}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

if [ "$target" = all ]; then
    run=("${TARGETS[@]}")
else
    case " ${TARGETS[*]} " in
        *" $target "*) run=("$target") ;;
        *) echo "fuzz.sh: unknown target '$target' (one of: ${TARGETS[*]}, all)" >&2; exit 2 ;;
    esac
fi

for t in "${run[@]}"; do
    work="fuzz/target/corpus/$t"
    mkdir -p "$work" "fuzz/corpus/$t" "fuzz/regressions/$t"
    echo "fuzz.sh: $t for ${seconds}s"
    # Regressions first: a fixed bug must stay fixed before new inputs are looked for.
    cargo fuzz run --fuzz-dir fuzz "$t" "$work" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
        -max_total_time="$seconds" -max_len=4096 -print_final_stats=1
done
