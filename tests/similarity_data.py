"""A planted cohort for the similarity report (tests and bench/bench_similarity.py): independent solutions written
differently, and copies of some of them with the disguises copiers use, singly and combined.

The exercise is a small one in the course's style: a starter notebook (imports, a parameters cell, the task's text
and function stubs) and eight functions to write. Each function has three implementations written differently (a
loop, a comprehension, torch operations...); an independent student is a combination of them, and any two
independent students differ in at least four of the eight functions (they share the rest, as students of one
lecture do)."""

from __future__ import annotations

import itertools
import random
import re

STARTER = [
    "import math\nimport torch\nimport torch.nn.functional as F",
    "# parameters\nTEXT = 'the cat sat on the mat'\nK = 3\nTEMPERATURE = 0.7\nSEED = 0",
    "def normalise(text):\n    ...",
    "def vocabulary(words):\n    ...",
    "def top_k(scores, k):\n    ...",
    "def softmax_t(logits, temperature):\n    ...",
    "def sample_one(probs, seed):\n    ...",
    "def cosine(a, b):\n    ...",
    "def perplexity(log_probs):\n    ...",
    "def chunks(ids, size):\n    ...",
    "print(top_k(torch.tensor([0.1, 0.5, 0.2]), 2))",
]

# Three ways each step is written; the i-th student takes choice[i] of each.
WAYS = {
    "normalise": [
        "def normalise(text):\n    text = text.lower()\n    kept = []\n    for ch in text:\n        if ch.isalnum() or "
        "ch == ' ':\n            kept.append(ch)\n    return ''.join(kept).split()",
        "def normalise(text):\n    return [w for w in re.sub(r'[^a-z0-9 ]', '', text.lower()).split() if w]",
        "def normalise(text):\n    import string\n    table = str.maketrans('', '', string.punctuation)\n"
        "    words = text.translate(table).casefold().split(' ')\n    return list(filter(None, words))",
    ],
    "vocabulary": [
        "def vocabulary(words):\n    vocab = {}\n    for w in words:\n        if w not in vocab:\n            vocab[w] = "
        "len(vocab)\n    return vocab",
        "def vocabulary(words):\n    return {w: i for i, w in enumerate(dict.fromkeys(words))}",
        "def vocabulary(words):\n    ordered = sorted(set(words), key=words.index)\n    return dict(zip(ordered, "
        "range(len(ordered))))",
    ],
    "top_k": [
        "def top_k(scores, k):\n    values, indices = torch.topk(scores, k)\n    return indices.tolist()",
        "def top_k(scores, k):\n    order = sorted(range(len(scores)), key=lambda i: float(scores[i]), reverse=True)"
        "\n    return order[:k]",
        "def top_k(scores, k):\n    best = []\n    remaining = scores.clone()\n    while len(best) < k:\n        i = int("
        "remaining.argmax())\n        best.append(i)\n        remaining[i] = -float('inf')\n    return best",
    ],
    "softmax_t": [
        "def softmax_t(logits, temperature):\n    return F.softmax(logits / temperature, dim=-1)",
        "def softmax_t(logits, temperature):\n    scaled = logits / temperature\n    scaled = scaled - scaled.max()\n"
        "    e = torch.exp(scaled)\n    return e / e.sum()",
        "def softmax_t(logits, temperature):\n    exps = [math.exp(float(x) / temperature) for x in logits]\n"
        "    total = sum(exps)\n    return torch.tensor([x / total for x in exps])",
    ],
    "sample_one": [
        "def sample_one(probs, seed):\n    torch.manual_seed(seed)\n    return int(torch.multinomial(probs, 1))",
        "def sample_one(probs, seed):\n    g = torch.Generator().manual_seed(seed)\n    return torch.multinomial(probs, "
        "num_samples=1, generator=g).item()",
        "def sample_one(probs, seed):\n    torch.manual_seed(seed)\n    u = torch.rand(())\n    cumulative = torch."
        "cumsum(probs, 0)\n    return int((cumulative < u).sum())",
    ],
    "cosine": [
        "def cosine(a, b):\n    return float(F.cosine_similarity(a, b, dim=0))",
        "def cosine(a, b):\n    return float((a @ b) / (a.norm() * b.norm()))",
        "def cosine(a, b):\n    dot = sum(x * y for x, y in zip(a.tolist(), b.tolist()))\n    na = math.sqrt(sum(x * x for x "
        "in a.tolist()))\n    nb = math.sqrt(sum(y * y for y in b.tolist()))\n    return dot / (na * nb)",
    ],
    "perplexity": [
        "def perplexity(log_probs):\n    return math.exp(-sum(log_probs) / len(log_probs))",
        "def perplexity(log_probs):\n    t = torch.tensor(log_probs)\n    return float(torch.exp(-t.mean()))",
        "def perplexity(log_probs):\n    total = 0.0\n    n = 0\n    for lp in log_probs:\n        total -= lp\n"
        "        n += 1\n    return math.exp(total / n)",
    ],
    "chunks": [
        "def chunks(ids, size):\n    return [ids[i:i + size] for i in range(0, len(ids), size)]",
        "def chunks(ids, size):\n    out = []\n    current = []\n    for x in ids:\n        current.append(x)\n"
        "        if len(current) == size:\n            out.append(current)\n            current = []\n"
        "    if current:\n        out.append(current)\n    return out",
        "def chunks(ids, size):\n    return [list(group) for group in torch.tensor(ids).split(size)] if ids else []",
    ],
}
STEPS = list(WAYS)
EXTRA = ["import re", "print(normalise(TEXT))", "vocab = vocabulary(normalise(TEXT))\nprint(len(vocab))",
         "probs = softmax_t(torch.tensor([1.0, 2.0, 3.0]), TEMPERATURE)\nprint(sample_one(probs, SEED))"]


def independent_choices(count: int = 40, differ_in: int = 4, seed: int = 0) -> list[tuple[int, ...]]:
    """``count`` combinations of the ways, any two differing in at least ``differ_in`` steps (seeded, greedy)."""
    every = list(itertools.product(range(3), repeat=len(STEPS)))
    random.Random(seed).shuffle(every)
    chosen: list[tuple[int, ...]] = []
    for combo in every:
        if all(sum(a != b for a, b in zip(combo, other)) >= differ_in for other in chosen):
            chosen.append(combo)
            if len(chosen) == count:
                return chosen
    raise ValueError(f"only {len(chosen)} combinations differ in {differ_in} steps")


def notebook_cells(choice: tuple[int, ...]) -> list[str]:
    """A student's code cells: the starter with its stubs filled in the chosen ways, then their own lines."""
    filled = dict(zip(STEPS, choice))
    cells = [STARTER[0] + "\nimport re", STARTER[1]]
    cells += [WAYS[step][filled[step]] for step in STEPS]
    cells += EXTRA[1:] + [STARTER[-1]]
    return cells


# --- the disguises ---------------------------------------------------------------------------------------------

RENAMES = {"text": "sentence", "words": "tokens", "vocab": "mapping", "scores": "values", "k": "how_many",
           "logits": "raw", "temperature": "temp", "probs": "distribution", "seed": "rng_seed", "a": "left",
           "b": "right", "kept": "chars", "best": "winners", "exps": "exponentials", "total": "norm_sum",
           "scaled": "adjusted", "order": "ranking", "dot": "inner", "ordered": "uniq"}


def renamed(cells: list[str]) -> list[str]:
    """Every local name replaced by another (functions' parameters and variables; Japanese ones too)."""
    names = {**RENAMES, "na": "長さa", "nb": "長さb", "cumulative": "累積"}
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    return [pattern.sub(lambda m: names[m.group(1)], cell) for cell in cells]


def recommented(cells: list[str]) -> list[str]:
    """Comments added (in Japanese too), blank lines and spacing changed."""
    out = []
    for i, cell in enumerate(cells):
        lines = [f"# ステップ {i}: 自分で書いた", ""] + [line.replace(" = ", "  =  ") + "  # ok" if "=" in line
                                                    and not line.rstrip().endswith(":") else line
                                                    for line in cell.splitlines()]
        out.append("\n".join(lines) + "\n\n")
    return out


def reordered(cells: list[str]) -> list[str]:
    """The function cells in another order (the imports and parameters stay first)."""
    head, functions, tail = cells[:2], cells[2:2 + len(STEPS)], cells[2 + len(STEPS):]
    return head + functions[::-1] + tail


def padded(cells: list[str]) -> list[str]:
    """Dead code added: helpers never called, statements whose results are thrown away."""
    dead = ["def _unused_helper(x):\n    y = [i * 2 for i in range(10)]\n    return sum(y) + x",
            "_ = [len(str(i)) for i in range(5)]\nassert True",
            "def 未使用(値):\n    return 値"]
    out = list(cells)
    for n, block in enumerate(dead):
        out.insert(3 + 3 * n, block)
    return out


DISGUISES = {"renamed": renamed, "recommented": recommented, "reordered": reordered, "padded": padded}


def disguised(cells: list[str], names: tuple[str, ...]) -> list[str]:
    for name in names:
        cells = DISGUISES[name](cells)
    return cells


def planted(copies_of: int = 8) -> tuple[dict[str, list[str]], set[frozenset[str]]]:
    """The cohort: 40 independent students, and for the first ``copies_of`` of them a copier per disguise and one
    with all four at once. Returns each student's code cells and the pairs that are copies: the copiers of one
    original with it and with each other."""
    cohort: dict[str, list[str]] = {}
    copies: set[frozenset[str]] = set()
    for n, choice in enumerate(independent_choices()):
        cohort[f"ind{n:02d}"] = notebook_cells(choice)
    for n in range(copies_of):
        family = [f"ind{n:02d}"]
        for disguise in [*((d,) for d in DISGUISES), tuple(DISGUISES)]:
            copier = f"copy{n:02d}-{'+'.join(disguise)}"
            cohort[copier] = disguised(cohort[family[0]], disguise)
            family.append(copier)
        copies |= {frozenset(pair) for pair in itertools.combinations(family, 2)}
    return cohort, copies
