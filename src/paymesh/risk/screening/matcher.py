"""In-memory screening of a name against loaded sanctions lists.

Every listed name is normalised once, when the index is built, into three comparison forms:
its words sorted (word order ignored), and its words' phonetic keys sorted (spelling variants that
sound alike, looked up exactly in a dictionary). Names of
three words or more also get forms without their middle words, so a query that omits a middle
name still meets them. A query is compared with every form by rapidfuzz's `process.extract`
(C++, with a score cut-off that prunes most comparisons early); only the few forms above the
cut-off are then scored in Python with the date of birth, country, alias strength and type.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

from rapidfuzz import fuzz, process

from paymesh.risk.screening.lists import (
    BirthDate,
    EntityType,
    ListedEntry,
    NameStrength,
    country_code,
)
from paymesh.risk.screening.normalise import name_tokens, phonetic_key

DEFAULT_THRESHOLD = 85.0
# Score changes, in points out of 100. Positive evidence is kept smaller than negative so a
# perfect date of birth cannot lift a poor name match over the threshold on its own.
DATE_OF_BIRTH_EXACT_BONUS = 5.0
DATE_OF_BIRTH_YEAR_BONUS = 3.0
DATE_OF_BIRTH_DIFFERS_PENALTY = 15.0
COUNTRY_MATCHES_BONUS = 3.0
COUNTRY_DIFFERS_PENALTY = 10.0
STRENGTH_PENALTY: dict[NameStrength, float] = {"primary": 0.0, "strong": 0.0, "weak": 10.0}
MIDDLE_NAME_OMITTED_PENALTY = 5.0
SINGLE_WORD_PENALTY = 15.0
PHONETIC_ONLY_PENALTY = 5.0
# A phonetic match may lift the spelling similarity by at most this much: keys are short,
# so different names with the same consonants would otherwise look identical.
PHONETIC_MAX_LIFT = 8.0
# A short name made only of words that many listed names share ("Ahmad Hasan", "Abdul
# Karim") says little about who someone is: it needs a matching date of birth or country
# to reach the threshold. Words are "common" when at least this many entries use them.
COMMON_NAME_PENALTY = 15.0
COMMON_WORD_MIN_ENTRIES = 8
_MAX_POSITIVE_ADJUSTMENT = DATE_OF_BIRTH_EXACT_BONUS + COUNTRY_MATCHES_BONUS
# Interior words dropped to build "middle name omitted" forms stay few for long names.
_MAX_WORDS_FOR_OMISSIONS = 6


@dataclass(frozen=True)
class ScreeningMatch:
    list_name: str
    entry_id: str
    matched_name: str
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class _NameForm:
    entry: ListedEntry
    listed_text: str
    strength: NameStrength
    word_count: int
    middle_omitted: bool


@dataclass(frozen=True)
class _QueryForms:
    sorted_words: str
    phonetic: str
    word_count: int


def _forms_of(tokens: list[str]) -> Iterable[tuple[list[str], bool]]:
    """The full name, then (for 3+ words) the name with one or more middle words omitted."""
    yield tokens, False
    if len(tokens) < 3 or len(tokens) > _MAX_WORDS_FOR_OMISSIONS:
        return
    middle = range(1, len(tokens) - 1)
    for kept_count in range(len(tokens) - 2):
        for kept in combinations(middle, kept_count):
            yield [tokens[0], *(tokens[i] for i in kept), tokens[-1]], True


def _query_forms(tokens: list[str]) -> _QueryForms:
    return _QueryForms(
        sorted_words=" ".join(sorted(tokens)),
        phonetic=" ".join(sorted(phonetic_key(token) for token in tokens)),
        word_count=len(tokens),
    )


class ScreeningIndex:
    """All names of one list version, ready to screen; immutable once built.

    Swapping list versions is swapping the reference to a new index (built off to the side),
    which is atomic in Python: a screening call sees the old or the new list, never a mix.
    """

    def __init__(self, entries: Iterable[ListedEntry]) -> None:
        self._forms: list[_NameForm] = []
        self._sorted_words: list[str] = []
        self._by_phonetic: dict[str, list[int]] = {}
        # Per query word count: the full names plus the middle-omitted forms of that length,
        # so one scan compares a query with exactly the forms it could reasonably be.
        self._choices_by_word_count: dict[int, tuple[list[str], list[int]]] = {}
        full_forms: list[tuple[str, int]] = []
        omitted_by_word_count: dict[int, list[tuple[str, int]]] = {}
        seen: set[tuple[str, str, str]] = set()
        for entry in entries:
            for name in entry.names:
                for tokens, middle_omitted in _forms_of(name_tokens(name.text)):
                    forms = _query_forms(tokens)
                    key = (entry.list_name, entry.entry_id, forms.sorted_words)
                    if not tokens or key in seen:
                        continue
                    seen.add(key)
                    index = len(self._forms)
                    self._forms.append(
                        _NameForm(entry, name.text, name.strength, len(tokens), middle_omitted)
                    )
                    self._sorted_words.append(forms.sorted_words)
                    self._by_phonetic.setdefault(forms.phonetic, []).append(index)
                    bucket = (
                        omitted_by_word_count.setdefault(len(tokens), [])
                        if middle_omitted
                        else full_forms
                    )
                    bucket.append((forms.sorted_words, index))
        for word_count in range(1, _MAX_WORDS_FOR_OMISSIONS + 1):
            choices = full_forms + omitted_by_word_count.get(word_count, [])
            self._choices_by_word_count[word_count] = (
                [text for text, _ in choices],
                [index for _, index in choices],
            )
        self._full_choices = self._choices_by_word_count[_MAX_WORDS_FOR_OMISSIONS + 1] = (
            [text for text, _ in full_forms],
            [index for _, index in full_forms],
        )
        self._common_words = _common_words(self._forms)
        self._name_count = len({(f.entry.entry_id, f.listed_text) for f in self._forms})

    @property
    def size(self) -> int:
        """How many listed names (aliases included) are indexed."""
        return self._name_count

    def screen(
        self,
        name: str,
        *,
        type: EntityType | None = None,  # noqa: A002 - the API's own field name
        country: str | None = None,
        date_of_birth: datetime.date | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        limit: int = 5,
    ) -> list[ScreeningMatch]:
        """Listed names similar to `name`, best first, each scoring at least `threshold`."""
        tokens = name_tokens(name)
        if not tokens or limit <= 0:
            return []
        query = _query_forms(tokens)
        cut_off = min(100.0, max(0.0, threshold - _MAX_POSITIVE_ADJUSTMENT))
        similarities = self._name_similarities(query, cut_off)
        query_country = _query_country(country)
        query_is_common = len(tokens) <= 2 and all(t in self._common_words for t in tokens)
        best_by_entry: dict[tuple[str, str], ScreeningMatch] = {}
        for form_index, (similarity, how) in similarities.items():
            form = self._forms[form_index]
            if type is not None and form.entry.type != type:
                continue
            match = _score(form, query, similarity, how, query_country, date_of_birth)
            if query_is_common:
                match = _with_penalty(match, COMMON_NAME_PENALTY, "common name")
            key = (form.entry.list_name, form.entry.entry_id)
            if match.score >= threshold and (
                key not in best_by_entry or match.score > best_by_entry[key].score
            ):
                best_by_entry[key] = match
        ranked = sorted(best_by_entry.values(), key=lambda match: (-match.score, match.entry_id))
        return ranked[:limit]

    def _name_similarities(
        self, query: _QueryForms, cut_off: float
    ) -> dict[int, tuple[float, str]]:
        """Best name similarity per indexed form at or above `cut_off`, with how it was found."""
        texts, indices = self._choices_by_word_count.get(query.word_count, self._full_choices)
        found: dict[int, tuple[float, str]] = {}
        for _, similarity, position in process.extract(
            query.sorted_words, texts, scorer=fuzz.ratio, score_cutoff=cut_off, limit=None
        ):
            found[indices[position]] = (similarity, "spelling")
        # Same sounds word for word: lift the spelling similarity, but only so far, because
        # phonetic keys are short and different names can share them.
        for index in self._by_phonetic.get(query.phonetic, ()):
            spelling = found.get(index, (0.0, ""))[0] or fuzz.ratio(
                query.sorted_words, self._sorted_words[index]
            )
            lifted = min(100.0 - PHONETIC_ONLY_PENALTY, spelling + PHONETIC_MAX_LIFT)
            if lifted > spelling and lifted >= cut_off:
                found[index] = (lifted, "sounds alike")
        return found


def _common_words(forms: list[_NameForm]) -> frozenset[str]:
    entries_by_word: dict[str, set[str]] = {}
    for form in forms:
        if not form.middle_omitted:
            for word in name_tokens(form.listed_text):
                entries_by_word.setdefault(word, set()).add(form.entry.entry_id)
    return frozenset(
        word for word, ids in entries_by_word.items() if len(ids) >= COMMON_WORD_MIN_ENTRIES
    )


def _with_penalty(match: ScreeningMatch, penalty: float, reason: str) -> ScreeningMatch:
    return ScreeningMatch(
        list_name=match.list_name,
        entry_id=match.entry_id,
        matched_name=match.matched_name,
        score=round(max(0.0, match.score - penalty), 1),
        reasons=(*match.reasons, f"{reason} (-{penalty:.0f})"),
    )


def _query_country(country: str | None) -> str | None:
    if not country:
        return None
    cleaned = country.strip()
    if len(cleaned) == 2 and cleaned.isalpha():
        return cleaned.upper()
    return country_code(cleaned[:100])


def _score(
    form: _NameForm,
    query: _QueryForms,
    similarity: float,
    how: str,
    query_country: str | None,
    date_of_birth: datetime.date | None,
) -> ScreeningMatch:
    reasons = [f"name similarity {similarity:.0f} ({how}, word order ignored)"]
    score = similarity
    if form.middle_omitted:
        score -= MIDDLE_NAME_OMITTED_PENALTY
        reasons.append(f"middle name omitted (-{MIDDLE_NAME_OMITTED_PENALTY:.0f})")
    if STRENGTH_PENALTY[form.strength]:
        score -= STRENGTH_PENALTY[form.strength]
        reasons.append(f"weak alias (-{STRENGTH_PENALTY[form.strength]:.0f})")
    # A one-word alias ("Ahmed") identifies no one; a one-word listed name (a mononym) does.
    if form.strength != "primary" and min(form.word_count, query.word_count) == 1:
        score -= SINGLE_WORD_PENALTY
        reasons.append(f"single-word name (-{SINGLE_WORD_PENALTY:.0f})")
    score += _date_of_birth_adjustment(form.entry.birth_dates, date_of_birth, reasons)
    score += _country_adjustment(form.entry.countries, query_country, reasons)
    return ScreeningMatch(
        list_name=form.entry.list_name,
        entry_id=form.entry.entry_id,
        matched_name=form.listed_text,
        score=round(max(0.0, min(100.0, score)), 1),
        reasons=tuple(reasons),
    )


def _date_of_birth_adjustment(
    listed: tuple[BirthDate, ...], queried: datetime.date | None, reasons: list[str]
) -> float:
    if queried is None or not listed:
        return 0.0
    for date in listed:
        if (date.year, date.month, date.day) == (queried.year, queried.month, queried.day):
            reasons.append(f"date of birth matches (+{DATE_OF_BIRTH_EXACT_BONUS:.0f})")
            return DATE_OF_BIRTH_EXACT_BONUS
    for date in listed:
        if date.year <= queried.year <= date.last_year:
            reasons.append(f"date of birth year matches (+{DATE_OF_BIRTH_YEAR_BONUS:.0f})")
            return DATE_OF_BIRTH_YEAR_BONUS
    # Lists often give approximate years: one year off is neither evidence for nor against.
    if any(date.year - 1 <= queried.year <= date.last_year + 1 for date in listed):
        reasons.append("date of birth year within one year (0)")
        return 0.0
    reasons.append(f"date of birth differs (-{DATE_OF_BIRTH_DIFFERS_PENALTY:.0f})")
    return -DATE_OF_BIRTH_DIFFERS_PENALTY


def _country_adjustment(listed: tuple[str, ...], queried: str | None, reasons: list[str]) -> float:
    if queried is None or not listed:
        return 0.0
    if queried in listed:
        reasons.append(f"country matches (+{COUNTRY_MATCHES_BONUS:.0f})")
        return COUNTRY_MATCHES_BONUS
    reasons.append(f"country differs (-{COUNTRY_DIFFERS_PENALTY:.0f})")
    return -COUNTRY_DIFFERS_PENALTY
