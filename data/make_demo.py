"""Generate the shipped demo datasets: data/demo.jsonl (alpaca format, single turn) and
data/demo_chat.jsonl (OpenAI messages format, multi-turn, some with a system prompt).

Deterministic (fixed seed, no network): running it twice gives the same bytes. The rows are small
templated tasks whose answers follow from the prompt by a fixed rule (reverse a word list, count
items, uppercase, add two numbers, a capital from a fixed table, number a list), so a 2-layer model
trained for a minute on a CPU visibly learns the patterns and its loss falls. Lengths vary from about
10 to about 200 tokens so that the token-length statistics, padding waste and packing have something
to show.

The chat set asks the same tasks over several turns, so the Data tab can show that every assistant
turn of a conversation carries loss.

data/demo_pretrain.jsonl is the demo *base model's* corpus (trainer/engine/demo.py): plain documents
over the same words, numbers and facts, but never an instruction, an answer to one, or the answers'
phrasing. Like a real base model, the demo base then knows the words and the facts and not the tasks:
fine-tuning starts from a high loss on the answers and visibly brings it down. (Pre-trained on the
answers themselves, the base already predicted them: the first logged loss was the lowest one.)

    python data/make_demo.py            # rewrites data/demo.jsonl, data/demo_chat.jsonl, data/demo_pretrain.jsonl
    python data/make_demo.py --check    # exit 1 if a shipped file is not what this script makes
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "demo.jsonl"
CHAT_OUTPUT = Path(__file__).resolve().parent / "demo_chat.jsonl"
PRETRAIN_OUTPUT = Path(__file__).resolve().parent / "demo_pretrain.jsonl"
SEED = 1234
CHAT_SEED = 4321
PRETRAIN_SEED = 2468
PRETRAIN_DOCS = 1200
ROWS_PER_TASK = 60
CHAT_ROWS = 120
CHAT_SYSTEM = "You are a careful assistant. Answer briefly."

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


def make_chat_rows(seed: int = CHAT_SEED, count: int = CHAT_ROWS) -> list[dict]:
    """Conversations of one to three exchanges drawn from the same tasks; a third with a system prompt."""
    rng = random.Random(seed)
    rows: list[dict] = []
    seen: set[str] = set()
    while len(rows) < count:
        messages = [{"role": "system", "content": CHAT_SYSTEM}] if rng.random() < 1 / 3 else []
        for _ in range(rng.randint(1, 3)):
            task = rng.choice(TASKS)(rng)
            prompt = task["instruction"] + (f"\n\n{task['input']}" if task["input"] else "")
            messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": task["output"]}]
        key = json.dumps(messages)
        if key not in seen:  # a repeated conversation would be reported as a duplicate
            seen.add(key)
            rows.append({"messages": messages})
    return rows


def _shout(rng: random.Random) -> str:
    return " ".join(w.upper() for w in _words(rng, 1, 12)) + "!"


def _sum_fact(rng: random.Random) -> str:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return rng.choice([f"Take {a}, add {b}, and you get {a + b}.", f"{a} plus {b} gives {a + b}."])


def _city_fact(rng: random.Random) -> str:
    country, city = rng.choice(CAPITALS)
    return rng.choice([f"{city} is in {country}.", f"In {country}, the government sits in {city}.",
                       f"{city} ({country}) is a big city."])


def _tally(rng: random.Random) -> str:
    words = _words(rng, 1, 12)
    if rng.random() < 0.5:
        return f"{' '.join(words)}: {len(words)} in all."
    return f"There are {len(words)} of them in the box: {', '.join(words)}."


def _shopping_list(rng: random.Random) -> str:
    return "\n".join(f"{i}) {w}" for i, w in enumerate(_words(rng, 2, 8), 1))


def _story(rng: random.Random) -> str:
    a, b, c = rng.choice(WORDS), rng.choice(WORDS), rng.choice(WORDS)
    return f"The {a} saw a {b} near the {c}. Then the {b} and the {a} went home."


GREETINGS = [("Hello!", "Hello! Nice to meet you."), ("Good morning.", "Good morning to you too."),
             ("Thanks!", "You are welcome."), ("How are you?", "I am well, thank you."),
             ("Bye.", "Goodbye, see you soon.")]


def _small_talk(rng: random.Random) -> str:
    """Chat markup around small talk: a base that has seen the frame, as chat-ready bases have, but no task."""
    said, reply = rng.choice(GREETINGS)
    return f"<|im_start|>user\n{said}<|im_end|>\n<|im_start|>assistant\n{reply}<|im_end|>\n"


DOCUMENTS = [_shout, _sum_fact, _city_fact, _tally, _shopping_list, _story, _small_talk]


def make_pretrain_rows(seed: int = PRETRAIN_SEED, count: int = PRETRAIN_DOCS) -> list[dict]:
    """The demo base model's plain documents: the vocabulary, numbers and facts, none of the tasks."""
    rng = random.Random(seed)
    lists = [{"text": " ".join(_words(rng, 3, 30))} for _ in range(count // 4)]
    return lists + [{"text": rng.choice(DOCUMENTS)(rng)} for _ in range(count - len(lists))]


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the shipped files instead of writing them")
    args = parser.parse_args(argv)
    stale = 0
    for path, rows in ((OUTPUT, make_rows()), (CHAT_OUTPUT, make_chat_rows()),
                       (PRETRAIN_OUTPUT, make_pretrain_rows())):
        text = render(rows)
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current != text:
                print(f"{path} is out of date: run python data/make_demo.py", file=sys.stderr)
                stale += 1
            else:
                print(f"{path} is up to date")
            continue
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        print(f"wrote {len(rows)} rows to {path}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
