"""Write ``martlet_data/embedded/sample_arith.jsonl``: short arithmetic word problems in
GSM8K's shape (``question``; ``answer``: the working, then ``#### N``), made from a fixed
seed so the file is the same every time. Run from the repository root:
``python plugins/data/tools/make_sample_arith.py``."""

import json
import random
from pathlib import Path

OUT = Path(__file__).parents[1] / "src/martlet_data/embedded/sample_arith.jsonl"
NAMES = "Ana Ben Chen Dara Eli Femi Gus Hana Ivan Jude Kai Lena Milo Nora Omar Pia".split()
THINGS = "apples pencils stickers marbles books cookies stamps shells coins cards".split()


def problem(rng: random.Random) -> dict:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    kind = rng.randrange(5)
    a, b = rng.randint(2, 40), rng.randint(2, 20)
    if kind == 0:
        q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?"
        work, n = f"{a} + {b} = {a + b}", a + b
    elif kind == 1:
        a += b
        q = f"{name} has {a} {thing} and gives away {b}. How many {thing} are left?"
        work, n = f"{a} - {b} = {a - b}", a - b
    elif kind == 2:
        a, b = rng.randint(2, 9), rng.randint(2, 12)
        q = f"{name} buys {a} boxes with {b} {thing} in each. How many {thing} is that?"
        work, n = f"{a} * {b} = {a * b}", a * b
    elif kind == 3:
        b = rng.randint(2, 9)
        a = b * rng.randint(2, 12)
        q = f"{name} shares {a} {thing} equally among {b} friends. How many does each get?"
        work, n = f"{a} / {b} = {a // b}", a // b
    else:
        c = rng.randint(1, a + b - 1)
        q = (
            f"{name} has {a} {thing}, finds {b} more and then loses {c}. "
            f"How many {thing} does {name} have?"
        )
        work, n = f"{a} + {b} = {a + b}, and {a + b} - {c} = {a + b - c}", a + b - c
    return {"question": q, "answer": f"{work}.\n#### {n}"}


def main() -> None:
    rng = random.Random(20261204)
    rows = [problem(rng) for _ in range(120)]
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
