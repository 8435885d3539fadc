#!/usr/bin/env python3
"""Writes calib/default.txt, gemma4q's built-in calibration text (see calib/README.md).

Everything is written by this script: hand-written paragraphs below plus text generated from
templates with a fixed seed (prose, dialogue, lists, tables, arithmetic, code in several
languages, JSON and configuration snippets). The output is deterministic: the same script always
gives the same bytes. Usage: python3 scripts/calib/make_default.py OUT.txt
"""
import random
import sys

R = random.Random(20260101)

PARAGRAPHS = [
    "The harbour was quiet that morning. Fishing boats rocked against the pier, their ropes creaking "
    "in a rhythm that the old men on the bench claimed they could read like a clock. By seven the "
    "first ferry had left, and the gulls followed it out past the breakwater.",
    "A good recipe for bread needs only four things: flour, water, salt and time. Most mistakes come "
    "from impatience. Let the dough rest until it has doubled, shape it gently, and bake it hotter "
    "than you think is reasonable.",
    "Quantization maps numbers from a large set of values to a smaller one. A weight stored in four "
    "bits can take only sixteen values, so each block of weights carries a scale that stretches "
    "those values over the range the block actually uses.",
    "When the committee finally published its report, it was three hundred pages long and "
    "recommended, in essence, that the bridge be repaired rather than replaced. Nobody was "
    "surprised, least of all the engineers who had said so two years earlier.",
    "Rivers carry more than water. They move sand, gravel and clay from the mountains to the sea, "
    "building deltas, filling valleys and cutting canyons through rock over millions of years.",
    "She kept a notebook of every mistake she made while learning the violin: rushed bars, flat "
    "notes, the bow slipping on the E string. Reading it a year later, she laughed at how many of "
    "them she no longer remembered making.",
    "The library opens at nine on weekdays and at ten on Saturdays. Books may be borrowed for three "
    "weeks and renewed twice, unless another reader has reserved them.",
    "In the early days of computing, memory was so expensive that programmers counted every byte. "
    "Tricks that saved a few words of storage were celebrated, documented and passed around like "
    "recipes.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. Almost every food "
    "chain on land begins with it, and so does most of the oxygen we breathe.",
    "He had promised to be home by six, but the train stopped for forty minutes outside a station "
    "whose name he could not read in the dark, and nobody on board seemed to know why.",
]

NAMES = ["Ana", "Ben", "Chloe", "Dev", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kofi",
         "Lena", "Marta", "Nils", "Olu", "Priya", "Quinn", "Rosa", "Sami", "Tomas"]
PLACES = ["the market", "the station", "the old mill", "the library", "the harbour", "the school",
          "the hospital", "the bakery", "the museum", "the park", "the lab", "the office"]
THINGS = ["a map", "the keys", "a letter", "the report", "an umbrella", "the recipe", "a camera",
          "the tickets", "a notebook", "the charger", "a blue coat", "the invoice"]
ADJ = ["quiet", "busy", "cold", "bright", "narrow", "crowded", "empty", "warm", "noisy", "steep"]
VERBS = ["found", "lost", "carried", "forgot", "bought", "borrowed", "fixed", "painted", "opened",
         "checked"]
TIMES = ["in the morning", "after lunch", "late at night", "on Sunday", "before the storm",
         "during the meeting", "at dawn", "in winter", "last year", "yesterday"]
TOPICS = ["batteries", "volcanoes", "tides", "bridges", "compilers", "bees", "glaciers", "printing",
          "vaccines", "satellites", "coffee", "maps", "clocks", "bicycles", "telescopes"]
FACTS = ["store energy in chemical form", "form where tectonic plates meet",
         "follow the pull of the moon", "spread loads across their supports",
         "translate source code into machine instructions", "pollinate many crops",
         "carve valleys as they move", "made books cheap enough for ordinary readers",
         "train the immune system", "relay signals around the planet",
         "was first traded across the Red Sea", "compress a landscape onto paper",
         "divide the day into equal hours", "turn pedalling into motion", "gather faint light"]


def topic_fact():
    i = R.randrange(len(TOPICS))
    return TOPICS[i], FACTS[i]


def sentence():
    n = R.choice(NAMES)
    t, fact = topic_fact()
    forms = [
        lambda: f"{n} {R.choice(VERBS)} {R.choice(THINGS)} at {R.choice(PLACES)} {R.choice(TIMES)}.",
        lambda: f"The {R.choice(ADJ)} road to {R.choice(PLACES)} was closed {R.choice(TIMES)}, so {n} walked.",
        lambda: f"Why did {n} go to {R.choice(PLACES)} {R.choice(TIMES)}? Nobody asked.",
        lambda: f"{t.capitalize()} {fact}, which surprised {n}.",
        lambda: f"According to {n}, {t} {fact}.",
        lambda: f"It was {R.choice(ADJ)} at {R.choice(PLACES)}, and {n} had {R.choice(THINGS)}.",
    ]
    return R.choice(forms)()


def prose():
    return " ".join(sentence() for _ in range(R.randint(3, 7)))


def dialogue():
    a, b = R.sample(NAMES, 2)
    lines = [f'"Have you seen {R.choice(THINGS)}?" {a} asked.',
             f'"I think I left it at {R.choice(PLACES)}," said {b}.',
             f'"{R.choice(TIMES).capitalize()}?"',
             f'"Yes. It was {R.choice(ADJ)} there, and I was in a hurry."',
             f'{a} sighed. "Then we go back {R.choice(TIMES)}."']
    return "\n".join(lines[:R.randint(3, 5)])


def chat():
    t, fact = topic_fact()
    return (f"User: Can you tell me something about {t}?\n"
            f"Assistant: Sure. In short, {t} {fact}. {prose()}")


def listing():
    head = R.choice(["Shopping list", "To do", "Packing list", "Steps", "Checklist"])
    items = [R.choice(THINGS) for _ in range(R.randint(3, 7))]
    if R.random() < 0.5:
        body = "\n".join(f"- {x}" for x in items)
    else:
        body = "\n".join(f"{i + 1}. {x.capitalize()}" for i, x in enumerate(items))
    return f"{head}:\n{body}"


def table():
    rows = ["| city | day | temp (C) | rain (mm) |", "|---|---|---|---|"]
    for _ in range(R.randint(3, 6)):
        rows.append(f"| {R.choice(['Oslo', 'Lima', 'Pune', 'Accra', 'Perth', 'Quito', 'Turin'])} | "
                    f"{R.choice(['Mon', 'Tue', 'Wed', 'Thu', 'Fri'])} | {R.uniform(-5, 35):.1f} | "
                    f"{R.randint(0, 40)} |")
    return "\n".join(rows)


def arithmetic():
    a, b = R.randint(2, 9999), R.randint(2, 999)
    op = R.choice(["+", "-", "*"])
    v = {"+": a + b, "-": a - b, "*": a * b}[op]
    return f"Q: What is {a} {op} {b}?\nA: {a} {op} {b} = {v}."


def code_c():
    f = R.choice(["sum", "count_even", "max_abs", "dot"])
    n = R.choice(["n", "len", "count"])
    return (f"static double {f}(const double *x, size_t {n})\n{{\n    double acc = 0.0;\n"
            f"    for (size_t i = 0; i < {n}; i++)\n        acc += x[i] * {R.randint(1, 9)};\n"
            f"    return acc;\n}}")


def code_py():
    f = R.choice(["load_rows", "parse_line", "normalise", "merge_counts"])
    return (f"def {f}(path, limit={R.randint(10, 999)}):\n    \"\"\"Reads up to limit lines.\"\"\"\n"
            f"    out = []\n    with open(path, encoding=\"utf-8\") as fh:\n"
            f"        for i, line in enumerate(fh):\n            if i >= limit:\n"
            f"                break\n            out.append(line.strip().split(\",\"))\n"
            f"    return out")


def code_misc():
    k = R.choice(TOPICS)
    return R.choice([
        f'{{"name": "{k}", "id": {R.randint(1, 99999)}, "tags": ["{R.choice(ADJ)}", "{R.choice(ADJ)}"], "ok": true}}',
        f"SELECT name, COUNT(*) AS n FROM {k} WHERE year >= {R.randint(1990, 2025)} GROUP BY name ORDER BY n DESC;",
        f"[server]\nport = {R.randint(1024, 65535)}\nhost = \"127.0.0.1\"\ntimeout_s = {R.randint(1, 120)}",
        f"for f in *.log; do\n    grep -c '{R.choice(ADJ)}' \"$f\"\ndone",
        f"const total = items.filter(x => x.{k[:-1]} > {R.randint(0, 50)}).reduce((a, x) => a + x.price, 0);",
    ])


def main():
    out = sys.argv[1]
    parts = list(PARAGRAPHS)
    kinds = [prose, prose, prose, dialogue, chat, listing, table, arithmetic, code_c, code_py,
             code_misc]
    while sum(len(p) + 2 for p in parts) < 160_000:
        parts.append(R.choice(kinds)())
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
