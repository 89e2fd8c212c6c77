#!/usr/bin/env python3
"""tiktoken's side of bench/tokenizer.sh: encodes the same .txt documents with tiktoken's gpt2
encoding (built from a local gpt2.tiktoken, as tools/reference/make_tokenizer_fixtures.py does)
and prints one line per configuration: `tiktoken <mode> <threads> <MB/s> <tokens>`.

Modes: `batch` is Encoding.encode_ordinary_batch(docs, num_threads=N) (tiktoken's own thread
pool); `loop` is a plain loop of encode_ordinary over the documents (one thread). Time covers
encoding only: the documents are already in memory. Best of --repeat runs.
"""
import argparse
import glob
import os
import time

import tiktoken
from tiktoken.load import load_tiktoken_bpe

try:
    from tiktoken_ext.openai_public import r50k_pat_str as PATTERN
except ImportError:
    PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("text_dir")
    args = ap.parse_args()
    enc = tiktoken.Encoding(name="gpt2_local", pat_str=PATTERN,
                            mergeable_ranks=load_tiktoken_bpe(args.vocab),
                            special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)
    files = sorted(glob.glob(os.path.join(args.text_dir, "*.txt")))
    # The same bytes muongpt reads; invalid UTF-8 replaced as muongpt does.
    docs = [open(f, "rb").read().decode("utf-8", "replace") for f in files]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    print("tiktoken-version %s docs %d bytes %d" % (tiktoken.__version__, len(docs), nbytes))

    def best(fn):
        times, tokens = [], 0
        for _ in range(args.repeat):
            t = time.perf_counter()
            tokens = fn()
            times.append(time.perf_counter() - t)
        return min(times), tokens

    dt, n = best(lambda: sum(len(enc.encode_ordinary(d)) for d in docs))
    print("tiktoken loop 1 %.2f %d" % (nbytes / dt / 1e6, n + len(docs)))
    for th in args.threads:
        dt, n = best(lambda: sum(map(len, enc.encode_ordinary_batch(docs, num_threads=th))))
        print("tiktoken batch %d %.2f %d" % (th, nbytes / dt / 1e6, n + len(docs)))


if __name__ == "__main__":
    main()
