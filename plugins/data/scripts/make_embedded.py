"""Write the embedded datasets of martlet-data (deterministic).

    python plugins/data/scripts/make_embedded.py          # rewrites src/martlet_data/embedded/
    python plugins/data/scripts/make_embedded.py --check  # fails if the files differ

Every answer is computed here (arithmetic, conversions, string tasks, code output) or taken
from the hand-checked tables in ``facts.py``; nothing is sampled from a model. The same seed
gives byte-identical files.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "src" / "martlet_data" / "embedded"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import facts  # noqa: E402
from martlet_data.preprocess import mcq_row  # noqa: E402

SEED = 20260101


def chat(user: str, assistant: str, system: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
    ]


def cap(text: str) -> str:
    return text[0].upper() + text[1:]


# ---------------------------------------------------------------- task generators
# Each returns (prompt, correct answer, wrong answer) so SFT, DPO and KTO share them.


def arithmetic(rng: random.Random) -> tuple[str, str, str]:
    op = rng.choice("+-*/")
    if op == "+":
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        result, sign, verb = a + b, "+", "What is {a} plus {b}?"
    elif op == "-":
        a, b = rng.randint(50, 999), rng.randint(1, 49)
        result, sign, verb = a - b, "-", "What is {a} minus {b}?"
    elif op == "*":
        a, b = rng.randint(2, 99), rng.randint(2, 30)
        result, sign, verb = a * b, "×", "What is {a} times {b}?"
    else:
        b = rng.randint(2, 25)
        result = rng.randint(2, 40)
        a, sign, verb = b * result, "÷", "What is {a} divided by {b}?"
    prompt = rng.choice([verb, "Calculate {a} " + sign + " {b}.", "Compute {a} " + sign + " {b}."])
    prompt = prompt.format(a=a, b=b)
    wrong = result + rng.choice([-10, -2, -1, 1, 2, 10])
    return prompt, f"{a} {sign} {b} = {result}.", f"{a} {sign} {b} = {wrong}."


WORD_PROBLEMS = [
    (
        "A shop sells pencils for {x} cents each. How much do {y} pencils cost?",
        lambda x, y: x * y,
        "Each pencil costs {x} cents, so {y} pencils cost {y} × {x} = {r} cents.",
    ),
    (
        "Sara reads {x} pages a day. How many pages does she read in {y} days?",
        lambda x, y: x * y,
        "She reads {x} pages a day for {y} days: {x} × {y} = {r} pages.",
    ),
    (
        "A train travels at {x} km/h for {y} hours. How far does it go?",
        lambda x, y: x * y,
        "Distance = speed × time = {x} × {y} = {r} km.",
    ),
    (
        "Tom had {x} stickers and gave {y} to his sister. How many does he have left?",
        lambda x, y: x - y,
        "He has {x} - {y} = {r} stickers left.",
    ),
    (
        "A class has {x} boys and {y} girls. How many pupils are in the class?",
        lambda x, y: x + y,
        "There are {x} + {y} = {r} pupils.",
    ),
    (
        "{x} students go on a trip and each minibus holds {y}. How many minibuses are needed?",
        lambda x, y: -(-x // y),
        "{x} ÷ {y} rounded up is {r}, so {r} minibuses are needed.",
    ),
]


def word_problem(rng: random.Random) -> tuple[str, str, str]:
    template, fn, explain = rng.choice(WORD_PROBLEMS)
    x, y = rng.randint(12, 90), rng.randint(2, 11)
    if "gave" in template:
        x, y = max(x, y + 5), y
    r = fn(x, y)
    wrong = r + rng.choice([-3, -1, 1, 4])
    return template.format(x=x, y=y), explain.format(x=x, y=y, r=r), f"The answer is {wrong}."


def capital(rng: random.Random) -> tuple[str, str, str]:
    country, city, continent = rng.choice(facts.COUNTRIES)
    other = rng.choice([c for c in facts.COUNTRIES if c[1] != city])[1]
    prompt = rng.choice(
        [
            "What is the capital of {c}?",
            "Which city is the capital of {c}?",
            "Name the capital city of {c}.",
        ]
    ).format(c=country)
    return prompt, f"The capital of {country} is {city}.", f"The capital of {country} is {other}."


def continent(rng: random.Random) -> tuple[str, str, str]:
    country, _, where = rng.choice(facts.COUNTRIES)
    wrong = rng.choice([c for c in ("Europe", "Asia", "Africa", "Oceania") if c != where])
    return (
        f"On which continent is {country}?",
        f"{cap(country)} is in {where}.",
        f"{cap(country)} is in {wrong}.",
    )


CONVERSIONS = [
    ("How many metres are in {v} kilometres?", lambda v: v * 1000, "{v} km × 1000 = {r} metres."),
    ("How many grams are in {v} kilograms?", lambda v: v * 1000, "{v} kg × 1000 = {r} grams."),
    ("How many minutes are in {v} hours?", lambda v: v * 60, "{v} hours × 60 = {r} minutes."),
    ("How many seconds are in {v} minutes?", lambda v: v * 60, "{v} minutes × 60 = {r} seconds."),
    ("How many centimetres are in {v} metres?", lambda v: v * 100, "{v} m × 100 = {r} cm."),
    ("How many days are in {v} weeks?", lambda v: v * 7, "{v} weeks × 7 = {r} days."),
    ("How many millilitres are in {v} litres?", lambda v: v * 1000, "{v} L × 1000 = {r} mL."),
]


def conversion(rng: random.Random) -> tuple[str, str, str]:
    if rng.random() < 0.25:
        c = rng.choice(range(-20, 105, 5))
        f = c * 9 / 5 + 32
        f_text = f"{f:g}"
        return (
            f"Convert {c} degrees Celsius to Fahrenheit.",
            f"°F = °C × 9/5 + 32 = {c} × 9/5 + 32 = {f_text} °F.",
            f"{c} °C is {f + 3:g} °F.",
        )
    template, fn, explain = rng.choice(CONVERSIONS)
    v = rng.randint(2, 48)
    r = fn(v)
    return template.format(v=v), explain.format(v=v, r=r), f"There are {r // 10} of them."


def string_task(rng: random.Random) -> tuple[str, str, str]:
    words = [
        "planet",
        "garden",
        "rocket",
        "silver",
        "window",
        "python",
        "orange",
        "market",
        "candle",
        "bridge",
        "forest",
        "yellow",
        "anchor",
        "button",
        "pencil",
        "winter",
    ]
    kind = rng.choice(["reverse", "upper", "count", "letters", "sort", "first"])
    w = rng.choice(words)
    if kind == "reverse":
        return (
            f'Reverse the word "{w}".',
            f'"{w}" reversed is "{w[::-1]}".',
            f'"{w}" reversed is "{w}".',
        )
    if kind == "upper":
        return f'Write "{w}" in capital letters.', w.upper(), cap(w)
    if kind == "count":
        letter = rng.choice(sorted(set(w)))
        n = w.count(letter)
        return (
            f'How many times does the letter "{letter}" appear in "{w}"?',
            f'The letter "{letter}" appears {n} time{"s" if n != 1 else ""} in "{w}".',
            f'The letter "{letter}" appears {n + 1} times in "{w}".',
        )
    if kind == "letters":
        return (
            f'How many letters are in the word "{w}"?',
            f'"{w}" has {len(w)} letters.',
            f'"{w}" has {len(w) + 2} letters.',
        )
    if kind == "sort":
        picked = rng.sample(words, 4)
        ordered = sorted(picked)
        return (
            "Sort these words alphabetically: " + ", ".join(picked) + ".",
            ", ".join(ordered),
            ", ".join(sorted(picked, reverse=True)),
        )
    sentence = " ".join(rng.sample(words, 5))
    first = "".join(x[0] for x in sentence.split())
    return (
        f'Write the first letter of each word in "{sentence}".',
        first,
        first[::-1],
    )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def number_task(rng: random.Random) -> tuple[str, str, str]:
    kind = rng.choice(["prime", "parity", "gcd", "lcm", "factorial", "sqrt", "max", "sort"])
    if kind == "prime":
        n = rng.randint(2, 120)
        prime = len(_divisors(n)) == 2
        if prime:
            answer = f"Yes, {n} is prime: its only divisors are 1 and {n}."
            wrong = f"No, {n} is not prime."
        else:
            d = _divisors(n)[1]
            answer = f"No, {n} is not prime: it is divisible by {d} ({n} = {d} × {n // d})."
            wrong = f"Yes, {n} is prime."
        return f"Is {n} a prime number?", answer, wrong
    if kind == "parity":
        n = rng.randint(1, 9999)
        even = n % 2 == 0
        return (
            f"Is {n} even or odd?",
            f"{n} is {'even' if even else 'odd'}.",
            f"{n} is {'odd' if even else 'even'}.",
        )
    if kind == "gcd":
        a, b = rng.randint(6, 120), rng.randint(6, 120)
        g = math.gcd(a, b)
        return (
            f"What is the greatest common divisor of {a} and {b}?",
            f"The greatest common divisor of {a} and {b} is {g}.",
            f"The greatest common divisor of {a} and {b} is {g * 2}.",
        )
    if kind == "lcm":
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        m = a * b // math.gcd(a, b)
        return (
            f"What is the least common multiple of {a} and {b}?",
            f"The least common multiple of {a} and {b} is {m}.",
            f"The least common multiple of {a} and {b} is {a * b + 1}.",
        )
    if kind == "factorial":
        n = rng.randint(3, 10)
        steps = " × ".join(str(i) for i in range(n, 0, -1))
        return (
            f"What is {n} factorial?",
            f"{n}! = {steps} = {math.factorial(n)}.",
            f"{n}! = {math.factorial(n) + n}.",
        )
    if kind == "sqrt":
        r = rng.randint(2, 30)
        return (
            f"What is the square root of {r * r}?",
            f"The square root of {r * r} is {r}, because {r} × {r} = {r * r}.",
            f"The square root of {r * r} is {r + 1}.",
        )
    nums = rng.sample(range(1, 200), 6)
    if kind == "max":
        return (
            "Which is the largest of these numbers: " + ", ".join(map(str, nums)) + "?",
            f"The largest is {max(nums)}.",
            f"The largest is {min(nums)}.",
        )
    return (
        "Sort these numbers from smallest to largest: " + ", ".join(map(str, nums)) + ".",
        ", ".join(map(str, sorted(nums))),
        ", ".join(map(str, nums)),
    )


def translation(rng: random.Random) -> tuple[str, str, str]:
    row = rng.choice(facts.WORDS)
    i = rng.randrange(3)
    other = (i + 1) % 3
    lang = facts.LANGUAGES[i]
    return (
        f'How do you say "{row[0]}" in {lang}?',
        f'"{cap(row[0])}" in {lang} is "{row[i + 1]}".',
        f'"{cap(row[0])}" in {lang} is "{row[other + 1]}".',
    )


def vocabulary(rng: random.Random) -> tuple[str, str, str]:
    if rng.random() < 0.5:
        a, b = rng.choice(facts.ANTONYMS)
        if rng.random() < 0.5:
            a, b = b, a
        wrong = rng.choice([x for pair in facts.ANTONYMS for x in pair if x not in (a, b)])
        return (
            f'What is the opposite of "{a}"?',
            f'The opposite of "{a}" is "{b}".',
            f'The opposite of "{a}" is "{wrong}".',
        )
    s, p = rng.choice(facts.PLURALS)
    wrong = s + "s" if p != s + "s" else s + "es"
    return (
        f'What is the plural of "{s}"?',
        f'The plural of "{s}" is "{p}".',
        f'The plural of "{s}" is "{wrong}".',
    )


def chemistry(rng: random.Random) -> tuple[str, str, str]:
    z, sym, name, group = rng.choice(facts.ELEMENTS)
    other = rng.choice([e for e in facts.ELEMENTS if e[1] != sym])
    kind = rng.choice(["symbol", "number", "name"])
    if kind == "symbol":
        return (
            f"What is the chemical symbol for {name}?",
            f"The chemical symbol for {name} is {sym}.",
            f"The chemical symbol for {name} is {other[1]}.",
        )
    if kind == "number":
        return (
            f"What is the atomic number of {name}?",
            f"The atomic number of {name} is {z}.",
            f"The atomic number of {name} is {other[0]}.",
        )
    return (
        f"Which element has the symbol {sym}?",
        f"{sym} is the symbol of {name}, {group} with atomic number {z}.",
        f"{sym} is the symbol of {other[2]}.",
    )


def astronomy(rng: random.Random) -> tuple[str, str, str]:
    order, name, kind, fact = rng.choice(facts.PLANETS)
    other = rng.choice([p for p in facts.PLANETS if p[1] != name])
    if rng.random() < 0.5:
        return (
            f"Which planet is {facts.ORDINALS[order - 1]} from the Sun?",
            f"{name} is the {facts.ORDINALS[order - 1]} planet from the Sun. {fact}",
            f"{other[1]} is the {facts.ORDINALS[order - 1]} planet from the Sun.",
        )
    article = "an" if kind[0] in "aeiou" else "a"
    wrong_kind = "gas giant" if kind == "rocky planet" else "rocky planet"
    return (
        f"What kind of planet is {name}?",
        f"{name} is {article} {kind}. {fact}",
        f"{name} is a {wrong_kind}.",
    )


def sentiment(rng: random.Random) -> tuple[str, str, str]:
    text, label = rng.choice(facts.SENTIMENTS)
    other = "negative" if label == "positive" else "positive"
    return (
        f'Is the sentiment of this review positive or negative?\n"{text}"',
        cap(label) + ".",
        cap(other) + ".",
    )


def roman(rng: random.Random) -> tuple[str, str, str]:
    n = rng.randint(1, 3999)
    table = [
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ]
    out, rest = "", n
    for value, letters in table:
        while rest >= value:
            out, rest = out + letters, rest - value
    wrong = out + "I" if not out.endswith("III") else out[:-1]
    return f"Write {n} in Roman numerals.", f"{n} in Roman numerals is {out}.", f"{n} is {wrong}."


def _code(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


CODE_TASKS = [
    (
        "Write a Python function that reverses a string.",
        _code("""
            def reverse(text):
                return text[::-1]
        """),
    ),
    (
        "Write a Python function that checks whether a string is a palindrome.",
        _code("""
            def is_palindrome(text):
                cleaned = text.lower()
                return cleaned == cleaned[::-1]
        """),
    ),
    (
        "Write a Python function that returns the factorial of n.",
        _code("""
            def factorial(n):
                result = 1
                for i in range(2, n + 1):
                    result *= i
                return result
        """),
    ),
    (
        "Write a Python function that counts the vowels in a string.",
        _code("""
            def count_vowels(text):
                return sum(1 for ch in text.lower() if ch in "aeiou")
        """),
    ),
    (
        "Write a Python function that returns the n-th Fibonacci number (fib(0) = 0).",
        _code("""
            def fib(n):
                a, b = 0, 1
                for _ in range(n):
                    a, b = b, a + b
                return a
        """),
    ),
    (
        "Write a Python function that returns the largest number in a non-empty list without "
        "using max().",
        _code("""
            def largest(numbers):
                best = numbers[0]
                for x in numbers[1:]:
                    if x > best:
                        best = x
                return best
        """),
    ),
    (
        "Write a Python function that removes duplicates from a list and keeps the order.",
        _code("""
            def unique(items):
                seen = set()
                out = []
                for x in items:
                    if x not in seen:
                        seen.add(x)
                        out.append(x)
                return out
        """),
    ),
    (
        "Write a Python function that converts Celsius to Fahrenheit.",
        _code("""
            def to_fahrenheit(celsius):
                return celsius * 9 / 5 + 32
        """),
    ),
    (
        "Write a Python function that tells whether a number is prime.",
        _code("""
            def is_prime(n):
                if n < 2:
                    return False
                i = 2
                while i * i <= n:
                    if n % i == 0:
                        return False
                    i += 1
                return True
        """),
    ),
    (
        "Write a Python function that counts how often each word appears in a text.",
        _code("""
            from collections import Counter


            def word_counts(text):
                return Counter(text.split())
        """),
    ),
    (
        "Write a Python function that returns the sum of the even numbers in a list.",
        _code("""
            def sum_even(numbers):
                return sum(x for x in numbers if x % 2 == 0)
        """),
    ),
    (
        "Write a Python loop that prints FizzBuzz for the numbers 1 to 15.",
        _code("""
            for i in range(1, 16):
                if i % 15 == 0:
                    print("FizzBuzz")
                elif i % 3 == 0:
                    print("Fizz")
                elif i % 5 == 0:
                    print("Buzz")
                else:
                    print(i)
        """),
    ),
]

# checks that the code above does what its prompt says
CODE_CHECKS = [
    ("reverse('abc')", "cba"),
    ("is_palindrome('Level')", True),
    ("factorial(5)", 120),
    ("count_vowels('Education')", 5),
    ("fib(10)", 55),
    ("largest([3, 9, 2])", 9),
    ("unique([3, 1, 3, 2, 1])", [3, 1, 2]),
    ("to_fahrenheit(100)", 212.0),
    ("is_prime(97) and not is_prime(91)", True),
    ("word_counts('a b a')['a']", 2),
    ("sum_even([1, 2, 3, 4])", 6),
    (None, None),
]

SNIPPETS = [
    'print(len("hello world"))',
    "print(2 ** 10)",
    "print([i * i for i in range(5)])",
    'print("a,b,c".split(","))',
    "print(7 // 2, 7 % 2)",
    "print(sorted([3, 1, 2], reverse=True))",
    'print("Martlet".upper())',
    "print(sum(range(1, 11)))",
    'print({"a": 1, "b": 2}.get("c", 0))',
    "print(list(zip([1, 2], ['x', 'y'])))",
    'print("-".join(["2026", "01", "01"]))',
    "print(round(3.14159, 2))",
]


def run_snippet(code: str) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(code, {})  # noqa: S102 - our own fixed snippets
    return buffer.getvalue().strip()


def code_task(rng: random.Random) -> tuple[str, str, str]:
    if rng.random() < 0.5:
        prompt, code = rng.choice(CODE_TASKS)
        return prompt, f"```python\n{code}\n```", "You can find that online."
    snippet = rng.choice(SNIPPETS)
    out = run_snippet(snippet)
    return (
        f"What does this Python code print?\n```python\n{snippet}\n```",
        f"It prints:\n```\n{out}\n```",
        "It prints nothing.",
    )


def chinese(rng: random.Random) -> tuple[str, str, str]:
    kind = rng.choice(["add", "mul", "capital", "word"])
    if kind == "add":
        a, b = rng.randint(10, 500), rng.randint(10, 500)
        return f"{a}加{b}等于多少？", f"{a} + {b} = {a + b}。", f"{a} + {b} = {a + b + 1}。"
    if kind == "mul":
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        return f"计算{a}乘以{b}。", f"{a} × {b} = {a * b}。", f"{a} × {b} = {a * b - 2}。"
    if kind == "capital":
        country, city = rng.choice(facts.COUNTRIES_ZH)
        other = rng.choice([c for c in facts.COUNTRIES_ZH if c[1] != city])[1]
        return (
            f"{country}的首都是哪里？",
            f"{country}的首都是{city}。",
            f"{country}的首都是{other}。",
        )
    zh, en = rng.choice(facts.WORDS_ZH)
    other = rng.choice([w for w in facts.WORDS_ZH if w[1] != en])[1]
    return f"“{zh}”用英文怎么说？", f"“{zh}”的英文是“{en}”。", f"“{zh}”的英文是“{other}”。"


GENERATORS = [
    (arithmetic, 4),
    (word_problem, 3),
    (capital, 3),
    (continent, 1),
    (conversion, 2),
    (string_task, 3),
    (number_task, 4),
    (translation, 2),
    (vocabulary, 2),
    (chemistry, 2),
    (astronomy, 1),
    (sentiment, 1),
    (roman, 1),
    (code_task, 2),
    (chinese, 2),
]

UNHELPFUL = [
    "I don't know.",
    "I'm not sure, you should look it up yourself.",
    "Why do you want to know that?",
    "That's a difficult question.",
    "I can't help with that.",
    "Maybe. It depends.",
]


def tasks(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """``n`` distinct (prompt, answer, wrong answer) triples."""
    pool = [g for g, weight in GENERATORS for _ in range(weight)]
    seen: set[str] = set()
    out = []
    while len(out) < n:
        prompt, answer, wrong = rng.choice(pool)(rng)
        if prompt in seen or answer.strip() == wrong.strip():
            continue
        seen.add(prompt)
        out.append((prompt, answer, wrong))
    return out


SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise assistant. Keep answers short.",
    "You are a patient tutor who shows the working.",
]


def sample_sft(rng: random.Random) -> list[dict]:
    rows = []
    for prompt, answer, _ in tasks(rng, 300):
        system = rng.choice(SYSTEMS) if rng.random() < 0.2 else None
        rows.append({"messages": chat(prompt, answer, system)})
    # two-turn conversations that build on the first answer
    for _ in range(30):
        a, b, k = rng.randint(10, 99), rng.randint(10, 99), rng.randint(2, 9)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a} + {b}?"},
                    {"role": "assistant", "content": f"{a} + {b} = {a + b}."},
                    {"role": "user", "content": f"Now multiply that by {k}."},
                    {"role": "assistant", "content": f"{a + b} × {k} = {(a + b) * k}."},
                ]
            }
        )
    rng.shuffle(rows)
    return rows


def sample_dpo(rng: random.Random) -> list[dict]:
    rows = []
    for prompt, answer, wrong in tasks(rng, 300):
        rejected = wrong if rng.random() < 0.7 else rng.choice(UNHELPFUL)
        rows.append({"messages": chat(prompt, answer), "rejected_response": rejected})
    return rows


def sample_kto(rng: random.Random) -> list[dict]:
    rows = []
    for prompt, answer, wrong in tasks(rng, 300):
        good = rng.random() < 0.5
        reply = answer if good else (wrong if rng.random() < 0.75 else rng.choice(UNHELPFUL))
        rows.append({"messages": chat(prompt, reply), "label": good})
    return rows


def _options(rng: random.Random, answer: str, pool: list[str]) -> tuple[list[str], int]:
    distractors = rng.sample(sorted({p for p in pool if p != answer}), 3)
    choices = distractors + [answer]
    rng.shuffle(choices)
    return choices, choices.index(answer)


def sample_mcq(rng: random.Random) -> list[dict]:
    rows: list[dict] = []
    capitals = [c[1] for c in facts.COUNTRIES]
    for country, city, _ in facts.COUNTRIES:
        choices, i = _options(rng, city, capitals)
        rows.append(mcq_row(f"What is the capital of {country}?", choices, i, "geography"))
    for country, _, where in facts.COUNTRIES[::3]:
        continents = ["Europe", "Asia", "Africa", "North America", "South America", "Oceania"]
        choices, i = _options(rng, where, continents)
        rows.append(mcq_row(f"On which continent is {country}?", choices, i, "geography"))
    symbols = [e[1] for e in facts.ELEMENTS]
    names = [e[2] for e in facts.ELEMENTS]
    for z, sym, name, _ in facts.ELEMENTS:
        choices, i = _options(rng, sym, symbols)
        rows.append(mcq_row(f"What is the chemical symbol for {name}?", choices, i, "chemistry"))
        choices, i = _options(rng, name, names)
        rows.append(mcq_row(f"Which element has atomic number {z}?", choices, i, "chemistry"))
    planets = [p[1] for p in facts.PLANETS]
    for order, name, _kind, _ in facts.PLANETS:
        choices, i = _options(rng, name, planets)
        question = f"Which planet is {facts.ORDINALS[order - 1]} from the Sun?"
        rows.append(mcq_row(question, choices, i, "astronomy"))
    for q, a in [
        ("Which planet is the largest in the Solar System?", "Jupiter"),
        ("Which planet is known as the Red Planet?", "Mars"),
        ("Which planet is closest to the Sun?", "Mercury"),
        ("Which planet is famous for its bright rings?", "Saturn"),
        ("Which planet is the hottest?", "Venus"),
        ("Which planet rotates on its side?", "Uranus"),
    ]:
        choices, i = _options(rng, a, planets)
        rows.append(mcq_row(q, choices, i, "astronomy"))
    opposites = [x for pair in facts.ANTONYMS for x in pair]
    for a, b in facts.ANTONYMS:
        # size words are near-opposites of each other (big/short, tall/small): never distractors
        related = facts.SIZE_WORDS if a in facts.SIZE_WORDS else {a}
        choices, i = _options(rng, b, [x for x in opposites if x not in related or x == b])
        rows.append(mcq_row(f'What is the opposite of "{a}"?', choices, i, "vocabulary"))
    for s, p in facts.PLURALS:
        wrong = sorted({s + "s", s + "es", s + "en", p + "s"} - {p})
        choices = wrong[:3] + [p]
        rng.shuffle(choices)
        question = f'What is the plural of "{s}"?'
        rows.append(mcq_row(question, choices, choices.index(p), "vocabulary"))
    for row in facts.WORDS:
        for i, lang in enumerate(facts.LANGUAGES):
            if rng.random() < 0.5:
                continue
            pool = [w[i + 1] for w in facts.WORDS]
            choices, k = _options(rng, row[i + 1], pool)
            question = f'What is the {lang} word for "{row[0]}"?'
            rows.append(mcq_row(question, choices, k, "languages"))
    while len(rows) < 320:
        a, b = rng.randint(11, 99), rng.randint(11, 99)
        op = rng.choice(["+", "×", "-"])
        result = {"+": a + b, "×": a * b, "-": a - b}[op]
        pool = [str(result + d) for d in (-11, -10, -2, -1, 1, 2, 9, 10) if result + d != result]
        choices, i = _options(rng, str(result), pool)
        question = f"What is {a} {op} {b}?"
        if all(r["question"] != question for r in rows):
            rows.append(mcq_row(question, choices, i, "arithmetic"))
    rng.shuffle(rows)
    return rows


def _number_paragraph(n: int) -> str:
    divisors = _divisors(n)
    parts = [f"The number {n} is {'even' if n % 2 == 0 else 'odd'}."]
    if len(divisors) == 2:
        parts.append(f"It is a prime number: its only divisors are 1 and {n}.")
    else:
        parts.append(f"Its divisors are {', '.join(map(str, divisors[:-1]))} and {n}.")
    root = math.isqrt(n)
    if root * root == n:
        parts.append(f"It is a perfect square, because {root} × {root} = {n}.")
    if sum(divisors[:-1]) == n:
        parts.append(f"It is a perfect number: its proper divisors add up to {n}.")
    digits = sum(map(int, str(n)))
    parts.append(f"In binary it is written {n:b}, and its digits add up to {digits}.")
    return " ".join(parts)


def sample_pt(rng: random.Random) -> list[dict]:
    texts = list(facts.PARAGRAPHS)
    for country, city, where in facts.COUNTRIES:
        texts.append(
            f"{cap(country)} is a country in {where}. Its capital city is {city}, so a map of "
            f"{where} marks {city} as the capital of {country}."
        )
    for z, sym, name, group in facts.ELEMENTS:
        texts.append(
            f"{cap(name)} is a chemical element with the symbol {sym} and atomic number {z}, "
            f"which means each of its atoms has {z} proton{'s' if z > 1 else ''} in its "
            f"nucleus. It is classed as {group}."
        )
    for order, name, kind, fact in facts.PLANETS:
        texts.append(
            f"{name} is the {facts.ORDINALS[order - 1]} planet from the Sun and a {kind}. {fact}"
        )
    for s, p in facts.PLURALS:
        texts.append(f'The plural of the English noun "{s}" is "{p}".')
    for a, b in facts.ANTONYMS:
        texts.append(f'In English, "{a}" and "{b}" are opposites: each is an antonym of the other.')
    numbers = rng.sample(range(2, 500), 150)
    texts += [_number_paragraph(n) for n in numbers]
    rng.shuffle(texts)
    return [{"text": t} for t in texts]


def self_cognition_rows() -> list[dict]:
    """``self_cognition.tsv``: tag, query, response per line (hand-written)."""
    rows = []
    for line in (HERE / "self_cognition.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            tag, query, response = line.split("\t")
            rows.append({"query": query, "response": response, "tag": tag})
    return rows


def check_code() -> None:
    for (prompt, code), (expr, expected) in zip(CODE_TASKS, CODE_CHECKS, strict=True):
        if expr is None:
            out = run_snippet(code).split()
            assert out[:5] == ["1", "2", "Fizz", "4", "Buzz"] and out[14] == "FizzBuzz", prompt
            continue
        scope: dict = {}
        exec(code, scope)  # noqa: S102 - our own fixed snippets
        assert eval(expr, scope) == expected, (prompt, expr)  # noqa: S307


RL_SYSTEM = (
    "Solve the arithmetic problem. Think briefly inside <think> </think>, then give only the "
    "final number inside <answer> </answer>."
)
RL_NAMES = "Ana Ben Cleo Dev Eli Fay Gus Hana Ivo Jun Kai Lea Mo Nia Oz Pia".split()
RL_FORMS = (
    ("+", lambda r: (r.randint(2, 60), r.randint(2, 60)), lambda a, b: a + b,
     ("What is {a} + {b}?", "Add {a} and {b}.",
      "{name} has {a} apples and gets {b} more. How many apples now?")),
    ("-", lambda r: sorted((r.randint(2, 90), r.randint(2, 90)), reverse=True),
     lambda a, b: a - b,
     ("What is {a} - {b}?", "Subtract {b} from {a}.",
      "{name} has {a} stickers and gives away {b}. How many are left?")),
    ("*", lambda r: (r.randint(2, 9), r.randint(2, 12)), lambda a, b: a * b,
     ("What is {a} times {b}?", "Multiply {a} by {b}.",
      "{name} buys {a} bags with {b} sweets in each. How many sweets?")),
)  # fmt: skip


def sample_rl(rng: random.Random, n: int = 400) -> list[dict]:
    """Prompts for online RL (GRPO): one arithmetic question each, a system prompt asking for
    ``<think>``/``<answer>`` tags (martlet-rewards' default format), no answer turn: the
    policy writes it and ``solution`` (the number) is what the accuracy reward checks."""
    rows: list[dict] = []
    seen: set[tuple] = set()
    while len(rows) < n:
        op, draw, value, templates = rng.choice(RL_FORMS)
        a, b = draw(rng)
        if (op, a, b) in seen or (op == "-" and a == b):
            continue
        seen.add((op, a, b))
        question = rng.choice(templates).format(a=a, b=b, name=rng.choice(RL_NAMES))
        messages = [
            {"role": "system", "content": RL_SYSTEM},
            {"role": "user", "content": question},
        ]
        rows.append({"messages": messages, "solution": str(value(a, b))})
    return rows


def build() -> dict[str, list[dict]]:
    check_code()
    return {
        "self_cognition": self_cognition_rows(),
        "sample_sft": sample_sft(random.Random(SEED + 1)),
        "sample_dpo": sample_dpo(random.Random(SEED + 2)),
        "sample_kto": sample_kto(random.Random(SEED + 3)),
        "sample_mcq": sample_mcq(random.Random(SEED + 4)),
        "sample_pt": sample_pt(random.Random(SEED + 5)),
        "sample_rl": sample_rl(random.Random(SEED + 6)),
    }


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the files differ")
    args = parser.parse_args()
    stale = []
    for name, rows in build().items():
        path = OUT / f"{name}.jsonl"
        text = render(rows)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
            continue
        path.write_text(text, encoding="utf-8")
        print(f"{path.name}: {len(rows)} rows")
    if stale:
        print(f"out of date: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
