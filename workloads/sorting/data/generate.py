#!/usr/bin/env python3
"""Regenerate large.txt, the deterministic input of the sorting workload.

Usage (from this directory):  python3 generate.py large.txt

Uses only the standard library and its own splitmix64 generator (seed 20240611), so the
output is byte-identical on every Python 3 version and platform. The committed large.txt
must stay identical to the output of this script: its checksum is pinned in workload.yaml.
Lines are pseudo-English sentences; a few words carry UTF-8 accents so that bytes >= 0x80
appear and signed/unsigned byte-comparison bugs show up.
"""
import sys

SEED = 20240611
TARGET_BYTES = 4 * 1024 * 1024  # stop at the first line that reaches 4 MiB
MASK = (1 << 64) - 1

WORDS = """
the of and to in is was for on that with as by at from it an be this are or his
which her had not but all were they one we there been has their more will if when
who would so what about up out them into time than only some could other then its
over now also after two like first new years way many these may people well even
back down through where most much before must our right good just because each
those work house world water long little very still between own under might never
river mountain garden window morning evening winter summer autumn spring letter
story village market bridge harbour island forest valley meadow lantern kettle
candle pocket ladder button marble pebble feather thunder whisper shadow silver
golden quiet gentle bright narrow ancient hollow crooked sleepy clever stubborn
patient careful curious walked carried opened listened wondered gathered painted
counted followed remembered promised travelled borrowed noticed laughed answered
slowly quickly softly loudly early late often always sometimes perhaps together
apple bread cheese honey onion pepper salt sugar tea coffee milk butter lemon
north south east west left right above below behind beside beyond around across
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January April October
London Paris Lisbon Oslo Vienna Prague Dublin Madrid Athens Berlin Rome Zurich
café naïve über façade résumé jalapeño smörgåsbord crème déjà fiancée piñata
""".split()

PUNCT = [".", ".", ".", "!", "?", ";", ","]


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return self.next() % n


def make_line(rng):
    r = rng.below(100)
    if r < 2:
        return ""  # empty lines sort first
    if r < 4:
        return str(rng.below(100000))  # digits sort before letters
    words = [WORDS[rng.below(len(WORDS))] for _ in range(1 + rng.below(18))]
    if rng.below(3) == 0:
        words[0] = words[0][:1].upper() + words[0][1:]
    if rng.below(10) == 0:
        words.insert(rng.below(len(words) + 1), str(rng.below(1000)))
    line = " ".join(words)
    if rng.below(4) != 0:
        line += PUNCT[rng.below(len(PUNCT))]
    if rng.below(25) == 0:
        line = "  " + line  # leading spaces sort early
    return line


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUTPUT")
    rng = SplitMix64(SEED)
    out = bytearray()
    while len(out) < TARGET_BYTES:
        out += make_line(rng).encode("utf-8") + b"\n"
    with open(sys.argv[1], "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main()
