"""The functions that take the most of a py-spy flame graph (SVG), inclusive, each counted once
however deep it recurs:
`python benchmarks/flame_summary.py benchmarks/results/api.svg [--top 30] [--match careflow]`."""

from __future__ import annotations

import argparse
import html
import re
from collections import defaultdict
from pathlib import Path

FRAME = re.compile(r'<title>(?P<title>[^<]*)</title><rect [^>]*fg:x="(?P<x>\d+)" fg:w="(?P<w>\d+)"')
TITLE = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\) \(\d+ samples")


def inclusive_shares(svg: Path) -> tuple[int, list[tuple[str, int]]]:
    text = svg.read_text()
    total = int(re.search(r'total_samples="(\d+)"', text).group(1))
    intervals: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for match in FRAME.finditer(text):
        title = TITLE.match(html.unescape(match["title"]))
        if title:
            x, w = int(match["x"]), int(match["w"])
            intervals[f"{title['func']} ({title['file']})"].append((x, x + w))
    shares = []
    for name, spans in intervals.items():
        covered, end = 0, -1
        for start, stop in sorted(spans):
            if stop > end:
                covered += stop - max(start, end)
                end = stop
        shares.append((name, covered))
    return total, sorted(shares, key=lambda s: -s[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("svg", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", default="", help="only functions whose name or file contains this")
    args = parser.parse_args()
    for svg in args.svg:
        total, shares = inclusive_shares(svg)
        print(f"{svg} ({total} samples)")
        for name, samples in [s for s in shares if args.match in s[0]][: args.top]:
            print(f"  {100 * samples / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
