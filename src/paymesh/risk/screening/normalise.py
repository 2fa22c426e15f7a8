"""Name normalisation shared by the list loaders and the matcher.

Both sides of a comparison go through the same steps, so a name typed in Cyrillic, Arabic or
with diacritics meets the Latin spelling a list publishes: Unicode folding, transliteration to
ASCII, punctuation removed, particles and honorifics dropped, and well-known spelling families
("Mohammed", "Muhammad", "Mohamed") folded to one form.
"""

from __future__ import annotations

import re
import unicodedata

import jellyfish
from anyascii import anyascii

# Longer input is not a name; capping it bounds the cost of one screening call.
MAX_NAME_CHARS = 200

# Words that carry no identity: Arabic/Dutch/Romance particles and titles. Lists write them
# inconsistently ("Al-Ahdal", "Ahdal", "al Ahdal"), so comparing without them is more faithful.
PARTICLES = frozenset(
    {
        "al", "el", "ul", "ud", "ad", "ar", "as", "ash", "az", "bin", "ben", "ibn",
        "bint", "binti", "van", "von", "der", "den", "de", "da", "di", "del", "della",
        "la", "mr", "mrs", "ms", "dr", "haji", "hajji", "hadji", "sheikh", "shaykh",
        "sheik", "mullah", "mulla", "mawlawi", "maulavi", "maulvi", "qari", "fnu", "lnu", "mnu",
    }
)  # fmt: skip

# Spelling families whose members are the same name in transliteration; folding them keeps a
# "Mohammed" query as close to "Muhammad" as to itself, which edit distance alone does not.
_SPELLING_FAMILIES = {
    "muhammad": ("mohammed", "mohammad", "mohamed", "mohamad", "muhammed", "muhamad",
                 "mohammet", "mouhamed", "mohamud", "mohamood", "muhamed", "mohd", "md"),
    "abdul": ("abdel", "abdoul", "abdal", "abdoul", "abd"),
    "husayn": ("hussein", "husain", "hussain", "husein", "hossein", "hosein", "hossain"),
    "yusuf": ("youssef", "yousef", "yousuf", "yusef", "youssouf", "yousif", "yusif"),
    "abdullah": ("abdallah", "abdulla", "abdalla", "abdollah"),
    "ahmad": ("ahmed", "ahmet", "ahmat"),
    "usama": ("osama", "oussama", "usamah"),
    "umar": ("omar", "omer", "umer"),
    "uthman": ("othman", "osman", "usman", "uthman", "othmane"),
    "hasan": ("hassan", "hasen"),
    "khalid": ("khaled", "khalead"),
    "said": ("saeed", "saed", "sayed", "sayyid", "sayid", "saiid"),
    "mustafa": ("mustapha", "moustafa", "moustapha", "mostafa"),
    "ibrahim": ("ebrahim", "ibrahima", "brahim"),
    "yahya": ("yehia", "yahia", "yahiya"),
}  # fmt: skip
SPELLING_CANONICAL = {
    variant: canonical for canonical, variants in _SPELLING_FAMILIES.items() for variant in variants
}

_NOT_LETTER_OR_DIGIT = re.compile(r"[^a-z0-9 ]+")
_APOSTROPHES = re.compile(r"['`\u2018\u2019\u02bb\u02bc]")


def _is_syllabic_script(character: str) -> bool:
    """Han, Hangul and Kana write one syllable per character: each becomes its own word."""
    code = ord(character)
    return (
        0x3040 <= code <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xAC00 <= code <= 0xD7AF  # Hangul syllables
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
    )


def transliterate(text: str) -> str:
    """Fold Unicode to lower-case ASCII, keeping syllabic scripts' syllables apart."""
    folded = unicodedata.normalize("NFKC", text[:MAX_NAME_CHARS])
    if any(_is_syllabic_script(character) for character in folded):
        folded = "".join(
            f" {character} " if _is_syllabic_script(character) else character
            for character in folded
        )
    return anyascii(folded).lower()


def name_tokens(text: str) -> list[str]:
    """The identity-bearing words of a name, in their written order, canonically spelled."""
    ascii_text = _APOSTROPHES.sub("", transliterate(text))
    words = _NOT_LETTER_OR_DIGIT.sub(" ", ascii_text).split()
    kept = [word for word in words if word not in PARTICLES]
    # Dropping particles must not shrink a two-word name to one word ("Al Ahdal", "De Jong"):
    # a single word matches far too much.
    if len(kept) < min(2, len(words)):
        kept = words
    return [SPELLING_CANONICAL.get(word, word) for word in kept]


def normalise_name(text: str) -> str:
    """One space-separated string: the comparison form of a name ("" when nothing is left)."""
    return " ".join(name_tokens(text))


def phonetic_key(token: str) -> str:
    """A sound-alike key for one word (Metaphone); digits and odd words key to themselves."""
    if not token.isalpha():
        return token
    return jellyfish.metaphone(token) or token


# Transliteration folding, applied to both sides after the ASCII step: the letters that Latin,
# Russian-language and French-language spellings of the same name write differently (a Latin
# "Hasan" becomes "Хасан" and comes back as "khasan"; "Jamal" comes back as "dzhamal").
# Order matters: longer sequences first, double letters collapsed last.
_FOLDS = (
    ("dzh", "j"), ("dj", "j"), ("zh", "j"), ("kh", "h"), ("ph", "f"), ("ck", "k"),
    ("ou", "u"), ("q", "k"), ("w", "v"), ("x", "ks"), ("y", "i"),
)  # fmt: skip
_C_NOT_BEFORE_H = re.compile(r"c(?!h)")
_DOUBLE_LETTER = re.compile(r"([a-z])\1+")
# A word this long, one edit away from a spelling family member, is that member misspelled
# ("Mohaoed"); shorter words are too easily another name one letter away.
_FUZZY_FAMILY_MIN_LENGTH = 6


def fold_word(word: str) -> str:
    """A word's transliteration-neutral spelling: "khassan" and "hasan" both become "hasan"."""
    for written, folded in _FOLDS:
        if written in word:
            word = word.replace(written, folded)
    word = _C_NOT_BEFORE_H.sub("k", word)
    return _DOUBLE_LETTER.sub(r"\1", word)


def _deletions(word: str) -> set[str]:
    return {word[:position] + word[position + 1 :] for position in range(len(word))}


_FOLDED_CANONICAL = {
    fold_word(variant): fold_word(canonical)
    for canonical, variants in _SPELLING_FAMILIES.items()
    for variant in (canonical, *variants)
}
# One-edit neighbours of the long family members (SymSpell-style: a word and its one-letter
# deletions), so a typo inside "Mohammed" still meets "Muhammad". Ambiguous keys are left out.
_FUZZY_CANONICAL: dict[str, str] = {}
_AMBIGUOUS: set[str] = set()
for _variant, _canonical in _FOLDED_CANONICAL.items():
    if len(_variant) >= _FUZZY_FAMILY_MIN_LENGTH:
        for _key in (_variant, *_deletions(_variant)):
            if _FUZZY_CANONICAL.setdefault(_key, _canonical) != _canonical:
                _AMBIGUOUS.add(_key)
for _key in _AMBIGUOUS:
    del _FUZZY_CANONICAL[_key]


def _canonical_folded(word: str) -> str:
    if word in _FOLDED_CANONICAL:
        return _FOLDED_CANONICAL[word]
    if len(word) >= _FUZZY_FAMILY_MIN_LENGTH:
        for key in (word, *_deletions(word)):
            if key in _FUZZY_CANONICAL:
                return _FUZZY_CANONICAL[key]
    return word


_FOLDED_PARTICLES = frozenset(fold_word(particle) for particle in PARTICLES)


def comparison_tokens(text: str) -> list[str]:
    """The words the matcher compares: `name_tokens`, transliteration-folded, families folded.

    Particles are dropped again after folding, so a Cyrillic "хаджи" ("khadzhi") goes the way
    of "haji".
    """
    words = [fold_word(word) for word in name_tokens(text)]
    kept = [word for word in words if word not in _FOLDED_PARTICLES]
    if len(kept) < min(2, len(words)):
        kept = words
    return [_canonical_folded(word) for word in kept]


def deletion_neighbourhood(word: str) -> set[str]:
    """The word and its one-letter deletions: two words within one edit share one of these."""
    return {word, *_deletions(word)}
