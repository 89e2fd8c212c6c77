#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz with clang (AddressSanitizer + UndefinedBehavior-
# Sanitizer) and runs each for SECONDS; exits non-zero when any target finds a crash, a hang or a
# failed check (the input that did it is left in the build directory).
#
#   bash tests/fuzz/run.sh [SECONDS]      default 20 seconds per target
#
# Targets: fuzz_shard (the shard reader), fuzz_tokenizer (encode/decode round trips; needs
# gpt2.tiktoken: $MUONGPT_VOCAB or .cache/gpt2.tiktoken, fetched when absent), fuzz_vocab (the
# rank-file parser), fuzz_config (the run config and `--set` overrides). Build directory: $MUONGPT_FUZZ_BUILD (default build-fuzz). Compiler:
# $FUZZ_CXX, else the newest clang++ on PATH (libFuzzer ships with clang; on Debian it is in
# libclang-rt-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."

secs="${1:-20}"
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 2
fi
out="${MUONGPT_FUZZ_BUILD:-build-fuzz}"
cxx="${FUZZ_CXX:-}"
if [ -z "$cxx" ]; then
  for c in clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$c" >/dev/null 2>&1; then
      cxx="$c"
      break
    fi
  done
fi
[ -n "$cxx" ] || { echo "fuzz: error: no clang++ (apt-get install clang libclang-rt-dev)" >&2; exit 1; }
pcre="$(pkg-config --cflags --libs libpcre2-8)"
export MUONGPT_VOCAB="${MUONGPT_VOCAB:-.cache/gpt2.tiktoken}"
[ -f "$MUONGPT_VOCAB" ] || bash tools/fetch_vocab.sh "$MUONGPT_VOCAB"

mkdir -p "$out"
# shellcheck disable=SC2054  # the commas belong to -fsanitize=
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -I.)
data_sources=(core/files.cpp core/utf8.cpp data/shard.cpp data/tokenizer.cpp)
# The run config reaches into the sections' readers, routing and the dualizers' name parser.
config_sources=(core/config_table.cpp core/toml_reader.cpp core/files.cpp core/utf8.cpp core/linalg.cpp
                core/gemm_cpu.cpp core/parallel.cpp model/config.cpp optim/config.cpp
                model/params.cpp optim/schedule.cpp optim/routing.cpp optim/dualizer.cpp
                train/config.cpp)
toml="$(pkg-config --cflags --libs tomlplusplus)"
targets=(fuzz_shard fuzz_tokenizer fuzz_vocab fuzz_config)
for t in "${targets[@]}"; do
  echo "fuzz: building $t with $cxx"
  if [ "$t" = fuzz_config ]; then
    # shellcheck disable=SC2086
    "$cxx" "${flags[@]}" "tests/fuzz/$t.cpp" "${config_sources[@]}" $toml -llapack -lpthread \
      -o "$out/$t"
  else
    # shellcheck disable=SC2086
    "$cxx" "${flags[@]}" "tests/fuzz/$t.cpp" "${data_sources[@]}" $pcre -o "$out/$t"
  fi
done

# Seeds: a valid shard, some text, the head of the rank file.
seeds="$out/seeds"
mkdir -p "$seeds"/fuzz_shard "$seeds"/fuzz_tokenizer "$seeds"/fuzz_vocab "$seeds"/fuzz_config
{
  printf '\x88\xd8\x34\x01\x01\x00\x00\x00\x04\x00\x00\x00'
  head -c 1012 /dev/zero
  printf '\x50\xc4\xd0\x01\x14\x08\x0d\x00'
} >"$seeds/fuzz_shard/valid.bin"
printf "Hello world, it's 2024!\n\n  indented\tcode();\n" >"$seeds/fuzz_tokenizer/ascii.txt"
printf 'caf\xc3\xa9 \xe6\xbc\xa2\xe5\xad\x97 \xf0\x9f\x98\x80 \xff\xfe \xed\xa0\x80 \xe2\x82' \
  >"$seeds/fuzz_tokenizer/mixed.txt"
head -n 300 "$MUONGPT_VOCAB" >"$seeds/fuzz_vocab/head.tiktoken"
cp configs/quickstart.toml "$seeds/fuzz_config/"
printf '[model]\nn_layer = 2\n--set optim.rules=["blocks.0.* = adamw", "* = adamw"]\n--set run.name=a,b\n' \
  >"$seeds/fuzz_config/sets.txt"

status=0
for t in "${targets[@]}"; do
  corpus="$out/corpus/$t"
  mkdir -p "$corpus"
  echo "fuzz: running $t for ${secs}s"
  if ! "$out/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
      -print_final_stats=1 -artifact_prefix="$out/$t-" "$corpus" "$seeds/$t" \
      >"$out/$t.log" 2>&1; then
    status=1
    echo "fuzz: $t FAILED; the last lines of $out/$t.log:" >&2
    tail -30 "$out/$t.log" >&2
  else
    echo "fuzz: $t ok: $(grep -E '^stat::number_of_executed_units' "$out/$t.log" | awk '{print $2}') runs," \
      "$(grep -E '^stat::peak_rss_mb' "$out/$t.log" | awk '{print $2}') MB peak"
  fi
done
exit "$status"
