"""Generate the small, synthetic emotion demo dataset bundled with probekit.

The texts are short English social-media style comments built from hand-written
templates (openers, emotion-bearing clauses per label, topics, endings, the odd
emoji) and labelled with one or two of seven emotions. Generation is fully
deterministic: a single ``random.Random(seed)`` drives every choice, lists are
only ever indexed in their written order and sets are used for membership tests
only, so the output does not depend on hash randomisation.

Run it from the repository root to (re)write the shipped files::

    python -m tests.demo_data [--out DIR] [--seed N]

``DIR`` defaults to ``extract/demo/``, the shipped demo data. It receives
``train.jsonl`` (360 rows), ``validation.jsonl`` (120), ``test.jsonl`` (120),
``labels.txt`` and ``README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

logger = logging.getLogger(__name__)

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise", "neutral"]
SPLITS = {"train": 360, "validation": 120, "test": 120}
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "extract" / "demo"  # the shipped demo data
TWO_LABEL_FRACTION = 0.2
AMBIGUOUS_RATE = 0.06
MIN_WORDS, MAX_WORDS = 6, 25
# Relative frequency of single-label rows (largest-remainder allocation per split).
WEIGHTS = {"anger": 1.0, "fear": 0.8, "joy": 1.3, "love": 0.8, "sadness": 1.1, "surprise": 0.7, "neutral": 1.5}
# Label pairs that plausibly co-occur; always in LABELS order, never with neutral.
PAIRS = [("joy", "surprise"), ("joy", "love"), ("anger", "sadness"), ("fear", "sadness"),
         ("fear", "surprise"), ("anger", "surprise"), ("love", "sadness"), ("anger", "fear"),
         ("joy", "sadness"), ("love", "surprise")]


def _split(s: str) -> list[str]:
    return [p.strip() for p in s.split("|") if p.strip()]


TOPICS = _split("""the new phone | my sister's wedding | the season finale | this job interview |
the test result | the road trip | my neighbour's dog | the group project | the concert last night |
our flight home | the rent increase | the hospital visit | my grandma's birthday | the football match |
the app update | the camping weekend | my first apartment | the team meeting | the vet appointment |
the final exam | the new cafe downtown | the school play | this storm | the night bus | my brother's visit |
the book club | the quarterly review | the move to Leeds | the surprise party | my driving test""")

OPENERS = _split("""Honestly, | Ngl | Okay so | Not gonna lie, | Update: | Lol | Real talk, | So yeah, |
Guys, | Just saying, | Today: | Well, | Anyway, | Btw, | Quick one:""")

ENDINGS = [".", ".", ".", "!", "!!", "...", " lol.", " tbh.", " fr", ""]
GENERIC_EMOJI = ["🙃", "😅", "👀", "🤷"]
EMOJI = {"anger": ["😡", "🙄", "🤬"], "fear": ["😬", "😰", "😨"], "joy": ["😄", "🎉", "🥳"],
         "love": ["❤️", "🥰", "💕"], "sadness": ["😢", "💔", "😞"], "surprise": ["😮", "🤯", "😲"],
         "neutral": ["📌", "👍"]}

# Emotion-bearing clauses; {t} is a topic (replaced by "it" in a second clause).
CLAUSES = {
    "anger": _split("""{t} is a complete joke and I'm done with it | I am so fed up with {t} |
who on earth thought {t} was acceptable | {t} has me absolutely fuming | I can't stand how they handled {t} |
don't even get me started on {t} | {t} is the last straw for me | I'm sick of hearing excuses about {t} |
whoever is in charge of {t} should be ashamed | how is {t} still this broken |
they ruined {t} and nobody even apologised | {t} makes my blood boil | I want to scream about {t} |
{t} was a total insult to everyone involved"""),
    "fear": _split("""I'm terrified about {t} | {t} keeps me up at night |
my hands are shaking just thinking about {t} | what if {t} goes horribly wrong |
I have a really bad feeling about {t} | {t} is making me so anxious | I can't stop panicking over {t} |
I'm dreading {t} so much | my stomach is in knots over {t} | please tell me {t} will be okay |
I'm too scared to even look at {t} | {t} gives me the creeps | my heart is pounding about {t}"""),
    "joy": _split("""{t} went better than I could have hoped | I can't stop smiling about {t} |
{t} absolutely made my day | best news ever, {t} worked out | I'm over the moon about {t} |
{t} was so much fun | feeling amazing after {t} | we totally nailed {t} | {t} turned out perfect |
literally dancing around the kitchen after {t} | {t} has me in such a good mood |
couldn't be happier with {t} | {t} was the highlight of my year"""),
    "love": _split("""I adore everyone who made {t} happen | my heart is so full because of {t} |
{t} reminded me how much I care about you all | sending big hugs to everyone from {t} |
so grateful for the people who got me through {t} | you all mean the world to me after {t} |
cherishing every single moment of {t} | {t} with my family was so precious |
nothing beats cuddling up together after {t} | I treasure the memories from {t} |
my best friend showed up for {t} and she means everything to me |
so much affection for the crew behind {t} | I'm completely smitten, {t} was our thing"""),
    "sadness": _split("""{t} left me feeling so empty | I cried the whole way home after {t} |
{t} just broke my heart | I really miss how things were before {t} |
can't shake this heavy feeling since {t} | {t} felt like a final goodbye and it hurts |
nobody showed up for {t} and I feel so alone | I'm so down about {t} |
{t} didn't work out and I'm crushed | it's been such a lonely week since {t} |
tears everywhere after {t} | I kind of feel like giving up after {t} |
{t} reminds me of everything I lost"""),
    "surprise": _split("""wait, {t} actually happened? | I did not see {t} coming at all |
no way, {t} was real?? | {t} caught me completely off guard |
never in a million years did I expect {t} | I'm still in shock about {t} |
hold on, {t} is already over? | {t} turned out nothing like I expected | jaw on the floor after {t} |
who knew {t} would go like that | can't believe {t} just happened | out of nowhere, {t} got announced |
whoa, {t} was a total plot twist"""),
    "neutral": _split("""{t} is scheduled for next Tuesday | does anyone know what time {t} starts? |
{t} was moved to the afternoon | posting the details about {t} below | here is the link for {t} |
I'll write up a summary of {t} later | {t} takes about two hours | we talked about {t} over lunch |
reminder that {t} is on Friday | the info for {t} is on the website |
{t} has been added to the shared calendar | not sure yet who is going to {t} |
is {t} on Saturday or Sunday?"""),
}
# Plain factual statements (neutral, no topic slot; lower-case start, capitalised later).
FACTS = _split("""water boils at 100 degrees Celsius at sea level | the library closes at 8 pm on weekdays |
the number 42 bus now stops at Main Street instead of the station | the capital of Japan is Tokyo |
the store restocks its shelves every Monday morning | the museum is free on the first Sunday of each month |
trains on this line run every fifteen minutes | the recipe calls for two cups of flour |
parking on this street is free after 6 pm | the meeting notes were shared in the group chat |
the town has a population of about twelve thousand | the settings menu moved to the top right corner |
cats usually sleep between twelve and sixteen hours a day | the pharmacy on Elm Road opens at nine""")
# Mildly ambiguous clauses that carry little signal; used for a few rows whatever the label.
AMBIGUOUS = _split("""well, {t} happened | not sure how I feel about {t} | {t} was... something |
so that was {t} | thinking a lot about {t} today | {t} is all anyone talks about |
okay then, {t} | still processing {t} | {t} was a lot | can we talk about {t}""")
CONNECTORS = [", and ", " and honestly ", ". Also, ", ", but at the same time ", " - and ", "... "]


def _plan(n: int, rng: random.Random) -> list[tuple[str, ...]]:
    """Label sets for one split: ~20% pairs, the rest single labels by WEIGHTS."""
    n_two = round(n * TWO_LABEL_FRACTION)
    n_single = n - n_two
    total = sum(WEIGHTS[lab] for lab in LABELS)
    exact = [n_single * WEIGHTS[lab] / total for lab in LABELS]
    counts = [int(x) for x in exact]
    order = sorted(range(len(LABELS)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n_single - sum(counts)]:
        counts[i] += 1
    plan: list[tuple[str, ...]] = [(lab,) for lab, c in zip(LABELS, counts) for _ in range(c)]
    start = rng.randrange(len(PAIRS))
    plan += [PAIRS[(start + i) % len(PAIRS)] for i in range(n_two)]
    rng.shuffle(plan)
    return plan


def _clause(label: str, rng: random.Random, topic: str, ambiguous: bool) -> str:
    if label == "neutral" and not ambiguous and rng.random() < 0.35:
        return rng.choice(FACTS)
    pool = AMBIGUOUS if ambiguous else CLAUSES[label]
    return rng.choice(pool).replace("{t}", topic)


def _compose(labels: tuple[str, ...], rng: random.Random) -> str:
    topic = rng.choice(TOPICS)
    ambiguous = rng.random() < AMBIGUOUS_RATE
    if len(labels) == 1:
        body = _clause(labels[0], rng, topic, ambiguous)
    else:
        first, second = labels if rng.random() < 0.5 else labels[::-1]
        body = _clause(first, rng, topic, ambiguous)
        tail = _clause(second, rng, "it", False)
        # after a question, start a new sentence rather than joining with a comma
        body += " " + tail[0].upper() + tail[1:] if body.endswith("?") else rng.choice(CONNECTORS) + tail
    if rng.random() < 0.45:
        body = rng.choice(OPENERS) + " " + body
    if body[-1] not in "?!.":
        body += rng.choice(ENDINGS)
    r = rng.random()
    if r < 0.12:
        body += " " + rng.choice(EMOJI[rng.choice(labels)])
    elif r < 0.17:
        body += " " + rng.choice(GENERIC_EMOJI)
    body = body[0].upper() + body[1:]
    if rng.random() < 0.1:
        body = body.lower()
    return body


def generate(seed: int = 0) -> dict[str, list[dict]]:
    """Return ``{split: rows}``; each row is ``{"id", "text", "labels"}``."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split, n in SPLITS.items():
        rows = []
        for i, labels in enumerate(_plan(n, rng), start=1):
            for _ in range(500):
                text = _compose(labels, rng)
                key = text.casefold()
                if key not in seen and MIN_WORDS <= len(text.split()) <= MAX_WORDS:
                    break
            else:
                raise RuntimeError(f"could not make a unique text for {split} row {i}")
            seen.add(key)
            rows.append({"id": f"{split}-{i:04d}", "text": text, "labels": list(labels)})
        out[split] = rows
    return out


def label_counts(rows: list[dict]) -> dict[str, int]:
    counts = {lab: 0 for lab in LABELS}
    for row in rows:
        for lab in row["labels"]:
            counts[lab] += 1
    return counts


def _readme(data: dict[str, list[dict]], seed: int) -> str:
    counts = {s: label_counts(rows) for s, rows in data.items()}
    head = "| label | " + " | ".join(data) + " |"
    lines = [head, "|" + "---|" * (len(data) + 1)]
    lines += [f"| {lab} | " + " | ".join(str(counts[s][lab]) for s in data) + " |" for lab in LABELS]
    lines.append("| **rows** | " + " | ".join(str(len(r)) for r in data.values()) + " |")
    lines.append("| two-label rows | "
                 + " | ".join(str(sum(len(x["labels"]) == 2 for x in r)) for r in data.values()) + " |")
    return f"""# probekit demo dataset

A tiny multi-label emotion dataset of short, English, social-media style comments,
shipped so that probekit's examples and tests run without downloading anything.

**How it was made.** Entirely synthetic: texts are assembled from hand-written templates
(openers, emotion-bearing clauses per label, topics, endings, occasional emoji) by
`python -m tests.demo_data` (seed {seed}). About 20% of rows carry two labels (never
`neutral` with another label), a few rows are deliberately ambiguous, and no text occurs
twice across the splits. Do not draw conclusions about real emotion data from it.

**Files.** `train.jsonl`, `validation.jsonl`, `test.jsonl` (one JSON object per line) and
`labels.txt` (the label names, one per line, in index order).

**Columns.** `id` (e.g. `train-0001`), `text` (the comment), `labels` (list of 1-2 label names).

**Label counts per split.**

{chr(10).join(lines)}

**Licence.** Generated by the probekit project; distributed under the same licence as the project.
"""


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def write(out_dir: Path, seed: int = 0) -> None:
    """Generate the dataset and write the jsonl splits, labels.txt and README.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = generate(seed)
    for split, rows in data.items():
        _write_text(out_dir / f"{split}.jsonl",
                    "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        logger.debug("wrote %d rows to %s", len(rows), out_dir / f"{split}.jsonl")
    _write_text(out_dir / "labels.txt", "".join(lab + "\n" for lab in LABELS))
    _write_text(out_dir / "README.md", _readme(data, seed))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic emotion demo dataset.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    write(args.out, args.seed)
    logger.info("demo dataset (%s rows, seed %d) written to %s",
                "/".join(str(n) for n in SPLITS.values()), args.seed, args.out)


if __name__ == "__main__":
    main()
