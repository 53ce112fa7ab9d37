#!/usr/bin/env python3
"""Derives simnet/data/township_villages.csv.gz from the NBS 2023 village table.

Run once from the repository root:  python3 simnet/data/derive_township_villages.py ../shared/data/divisions/villages.csv.gz
Output: one line per township, `township_code,village_count`, sorted by code, gzip with mtime 0
so the committed file is byte-reproducible. The `village_table_matches_source` test in
simnet re-derives the table when the source is present and checks it is unchanged.
"""
import collections
import csv
import gzip
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/divisions/villages.csv.gz"
counts = collections.Counter()
with gzip.open(src, "rt", encoding="utf-8") as f:
    for row in csv.DictReader(f):
        counts[row["code"][:9]] += 1
lines = ["township,villages"] + [f"{t},{n}" for t, n in sorted(counts.items())]
data = ("\n".join(lines) + "\n").encode()
with open("simnet/data/township_villages.csv.gz", "wb") as raw:
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(data)
print(f"{len(counts)} townships, {sum(counts.values())} villages")
