"""Generate data/demo.jsonl: the shipped demo instruction dataset (alpaca format).

Deterministic (fixed seed, no network): running it twice gives the same bytes. The rows are small
templated tasks whose answers follow from the prompt by a fixed rule (reverse a word list, count
items, uppercase, add two numbers, a capital from a fixed table, number a list), so a 2-layer model
trained for a minute on a CPU visibly learns the patterns and its loss falls. Lengths vary from about
10 to about 200 tokens so that the token-length statistics, padding waste and packing have something
to show.

    python data/make_demo.py            # rewrites data/demo.jsonl
    python data/make_demo.py --check    # exit 1 if data/demo.jsonl is not what this script makes
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "demo.jsonl"
SEED = 1234
ROWS_PER_TASK = 60

WORDS = [
    "apple", "pear", "plum", "fig", "grape", "lemon", "melon", "cherry", "peach", "mango",
    "red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown",
    "cat", "dog", "fox", "owl", "bear", "wolf", "horse", "mouse", "tiger", "eagle",
    "river", "stone", "cloud", "tree", "lamp", "book", "chair", "door", "ship", "star",
]

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Canada", "Ottawa"),
    ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Norway", "Oslo"), ("Poland", "Warsaw"),
    ("Greece", "Athens"), ("Austria", "Vienna"), ("Chile", "Santiago"), ("Ireland", "Dublin"),
    ("Cuba", "Havana"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("India", "New Delhi"),
]


def _words(rng: random.Random, low: int, high: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(low, high))]


def _reverse(rng: random.Random) -> dict:
    words = _words(rng, 2, 24)
    return {"instruction": "Reverse the order of these words.", "input": " ".join(words),
            "output": " ".join(reversed(words))}


def _count(rng: random.Random) -> dict:
    words = _words(rng, 1, 30)
    return {"instruction": "How many words are in this list?", "input": " ".join(words),
            "output": f"There are {len(words)} words."}


def _uppercase(rng: random.Random) -> dict:
    words = _words(rng, 1, 20)
    return {"instruction": "Write these words in capital letters.", "input": " ".join(words),
            "output": " ".join(w.upper() for w in words)}


def _add(rng: random.Random) -> dict:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return {"instruction": f"What is {a} plus {b}?", "input": "", "output": f"{a} plus {b} is {a + b}."}


CAPITAL_QUESTIONS = ["What is the capital of {}?", "Name the capital city of {}.", "Which city is the capital of {}?"]


def _capital(rng: random.Random) -> dict:
    country, city = rng.choice(CAPITALS)
    question = rng.choice(CAPITAL_QUESTIONS).format(country)
    if rng.random() < 0.5:
        return {"instruction": question + " Answer with one word.", "input": "", "output": city}
    return {"instruction": question, "input": "", "output": f"The capital of {country} is {city}."}


def _numbered(rng: random.Random) -> dict:
    words = _words(rng, 2, 36)
    return {"instruction": "Number each word on its own line.", "input": " ".join(words),
            "output": "\n".join(f"{i}. {w}" for i, w in enumerate(words, 1))}


TASKS = [_reverse, _count, _uppercase, _add, _capital, _numbered]


def make_rows(seed: int = SEED, rows_per_task: int = ROWS_PER_TASK) -> list[dict]:
    """The demo rows, interleaved by task so that any prefix (max_samples) holds every task.

    Every row is distinct: a repeated row would be reported as a duplicate by the data checks.
    """
    rng = random.Random(seed)
    rows: list[dict] = []
    seen: set[str] = set()
    for _ in range(rows_per_task):
        for task in TASKS:
            row = task(rng)
            while json.dumps(row) in seen:
                row = task(rng)
            seen.add(json.dumps(row))
            rows.append(row)
    return rows


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the shipped file instead of writing it")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render(make_rows())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != text:
            print(f"{args.output} is out of date: run python data/make_demo.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.output)
    print(f"wrote {len(text.splitlines())} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
