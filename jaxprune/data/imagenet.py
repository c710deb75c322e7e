"""ImageNet-2012 class identities from shipped sources, and coarse WordNet categories.

* ``imagenet_wnids()``: the 1,000 synset ids in class-index order, read from the list that
  tensorflow-datasets ships (``tensorflow_datasets/datasets/imagenet2012/labels.txt``).
* ``imagenet_categories()``: which classes are animals, fruits, vegetables — a committed file
  (``imagenet_categories.json``) derived by :func:`categories_from_wordnet` from the WordNet 3.0
  database (whose noun offsets are the ImageNet synset ids; e.g. Debian's ``wordnet-base``
  package, ``/usr/share/wordnet``): a class belongs to a category when the category's synset
  is among its hypernyms. Regenerate with ``python -m jaxprune.data.imagenet /usr/share/wordnet``.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

# category -> (WordNet lemma, sense number) of the synsets whose hyponyms belong to it
CATEGORY_SYNSETS = {
    "animal": (("animal", 1),),
    "fruit": (("edible_fruit", 1), ("fruit", 1)),
    "vegetable": (("vegetable", 1),),
}
CATEGORIES_FILE = Path(__file__).with_name("imagenet_categories.json")


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """ImageNet-2012 synset ids by class index (tensorflow-datasets' shipped list)."""
    import tensorflow_datasets

    path = Path(tensorflow_datasets.__file__).parent / "datasets" / "imagenet2012" / "labels.txt"
    wnids = tuple(path.read_text().split())
    if len(wnids) != 1000:
        raise ValueError(f"{path}: expected 1000 synset ids, found {len(wnids)}")
    return wnids


def _read_wordnet(folder: Path):
    """(hypernyms by offset, first lemma by offset, offset of each (lemma, sense))."""
    hypernyms: dict[int, list[int]] = {}
    lemmas: dict[int, str] = {}
    for line in (folder / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue  # the licence header
        f = line.split(" | ")[0].split()
        offset, n_words = int(f[0]), int(f[3], 16)
        lemmas[offset] = f[4]
        at = 4 + 2 * n_words
        n_ptrs = int(f[at])
        ptrs = [f[at + 1 + 4 * k: at + 5 + 4 * k] for k in range(n_ptrs)]
        hypernyms[offset] = [int(p[1]) for p in ptrs if p[0] in ("@", "@i") and p[2] == "n"]
    senses = {}
    for line in (folder / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue
        f = line.split()
        n_synsets, n_ptrs = int(f[2]), int(f[3])
        offsets = f[6 + n_ptrs:6 + n_ptrs + n_synsets]
        for k, off in enumerate(offsets):
            senses[(f[0], k + 1)] = int(off)
    return hypernyms, lemmas, senses


def categories_from_wordnet(folder: str | Path) -> dict:
    """``{category: {class index: WordNet lemma}}`` for the ImageNet classes that are hyponyms
    of the synsets in ``CATEGORY_SYNSETS``, from a WordNet 3.0 database folder."""
    hypernyms, lemmas, senses = _read_wordnet(Path(folder))

    def ancestors(offset: int) -> set[int]:
        seen, todo = set(), [offset]
        while todo:
            for h in hypernyms.get(todo.pop(), []):
                if h not in seen:
                    seen.add(h)
                    todo.append(h)
        return seen

    out: dict = {"source": "WordNet 3.0 hypernyms of tensorflow-datasets' imagenet2012 "
                           "labels.txt", "synsets": {}}
    for category, keys in CATEGORY_SYNSETS.items():
        roots = {senses[k] for k in keys}
        out["synsets"][category] = [f"n{senses[k]:08d} {k[0]}.{k[1]}" for k in keys]
        out[category] = {i: lemmas[int(w[1:])] for i, w in enumerate(imagenet_wnids())
                         if ancestors(int(w[1:])) & roots}
    return out


@cache
def imagenet_categories() -> dict[str, dict[int, str]]:
    """``{"animal" | "fruit" | "vegetable": {class index: lemma}}`` (the committed file)."""
    data = json.loads(CATEGORIES_FILE.read_text())
    return {c: {int(i): name for i, name in data[c].items()} for c in CATEGORY_SYNSETS}


def imagenet_names() -> dict[int, str]:
    """A WordNet lemma for every class index that has one in the committed file."""
    names: dict[int, str] = {}
    for members in imagenet_categories().values():
        names.update(members)
    return names


if __name__ == "__main__":
    result = categories_from_wordnet(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wordnet")
    CATEGORIES_FILE.write_text(json.dumps(result, indent=1) + "\n")
    print({c: len(result[c]) for c in CATEGORY_SYNSETS}, "->", CATEGORIES_FILE)
