"""Writes examples/moons.csv: two interleaved half moons (2-D points, classes 0 and 1), seeded.

python examples/make_moons.py        # 1,000 points, noise 0.15, seed 0
"""

import csv
import math
import random
from pathlib import Path

POINTS = 1000
NOISE = 0.15  # standard deviation of the Gaussian jitter, in the moons' units (radius 1)
SEED = 0


def main() -> None:
    rng = random.Random(SEED)
    rows = []
    for i in range(POINTS):
        label = i % 2
        angle = math.pi * rng.random()
        x, y = (math.cos(angle), math.sin(angle)) if label == 0 else (1 - math.cos(angle), 0.5 - math.sin(angle))
        rows.append((round(x + rng.gauss(0, NOISE), 4), round(y + rng.gauss(0, NOISE), 4), label))
    with open(Path(__file__).with_name("moons.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("x1", "x2", "label"))
        writer.writerows(rows)


if __name__ == "__main__":
    main()
