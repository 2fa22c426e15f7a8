"""In-memory screening of a name against loaded sanctions lists.

Every listed name is normalised once, when the index is built (transliteration folded, see
`normalise.comparison_tokens`), into two comparison forms: its words sorted (word order
ignored), and its words' phonetic keys sorted (spelling variants that sound alike, looked up
exactly in a dictionary). Names of three words or more also get forms without their middle
words, so a query that omits a middle name still meets them.

A query is first blocked: only the forms that share a word with it, up to one edit, are
candidates (an inverted index on words and their one-letter deletions). The candidates are
compared by rapidfuzz's `process.extract` (C++, with a score cut-off computed from the evidence
the query carries); near misses that differ from the query in one word are compared again with
the shared words aligned. Only the few forms above the cut-off are then scored in Python with
the date of birth, country, alias strength and type.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations, pairwise

from rapidfuzz import fuzz, process

from paymesh.risk.screening.lists import (
    BirthDate,
    EntityType,
    ListedEntry,
    NameStrength,
    country_code,
)
from paymesh.risk.screening.normalise import (
    comparison_tokens,
    deletion_neighbourhood,
    phonetic_key,
)

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
# Interior words dropped to build "middle name omitted" forms stay few for long names.
_MAX_WORDS_FOR_OMISSIONS = 6
# Names that score up to this much below the cut-off are compared again with their shared
# words aligned (see `_aligned_similarity`).
ALIGNMENT_BAND = 25.0
# A one-word query this long is blocked with two typos' tolerance instead of one.
LONG_WORD_LETTERS = 8
# Beyond this a "word" is not a name (its two-deletion neighbourhood would grow quadratically).
_LONGEST_NAME_WORD = 20


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
    tokens: list[str]
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
        tokens=tokens,
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
        self._form_words: list[frozenset[str]] = []
        self._word_counts: list[int] = []
        self._by_phonetic: dict[str, list[int]] = {}
        # Blocking: forms by (word, word count), word count 0 for full names and the form's own
        # word count for middle-omitted forms, so a query only meets the forms it could
        # reasonably be. Adjacent words are also indexed joined ("abdul qader" under
        # "abdulqader"), since lists and customers split compound names differently.
        self._forms_by_word: dict[tuple[str, int], list[int]] = {}
        # A word's one-letter deletions (and the word itself) -> the indexed words that have it.
        self._words_by_deletion: dict[str, list[str]] = {}
        seen: set[tuple[str, str, str]] = set()
        names: set[tuple[str, str, str]] = set()
        for entry in entries:
            for name in entry.names:
                name_tokens = comparison_tokens(name.text)
                if name_tokens:
                    names.add((entry.list_name, entry.entry_id, name.text))
                for tokens, middle_omitted in _forms_of(name_tokens):
                    forms = _query_forms(tokens)
                    key = (entry.list_name, entry.entry_id, forms.sorted_words)
                    if not tokens or key in seen:
                        continue
                    seen.add(key)
                    self._add_form(
                        _NameForm(entry, name.text, name.strength, len(tokens), middle_omitted),
                        tokens,
                        forms,
                    )
        self._postings = self._postings_by_query_length()
        self._common_words = _common_words(self._forms)
        self._name_count = len(names)

    def _postings_by_query_length(self) -> dict[tuple[str, int], tuple[int, ...]]:
        """(word, query word count) -> the forms a query of that length is compared with."""
        postings: dict[tuple[str, int], tuple[int, ...]] = {}
        words = {word for word, _ in self._forms_by_word}
        for word in words:
            full = self._forms_by_word.get((word, 0), [])
            for word_count in range(1, _MAX_WORDS_FOR_OMISSIONS + 2):
                merged = (*full, *self._forms_by_word.get((word, word_count), ()))
                if merged:
                    postings[word, word_count] = merged
        return postings

    def _add_form(self, form: _NameForm, tokens: list[str], forms: _QueryForms) -> None:
        index = len(self._forms)
        self._forms.append(form)
        self._sorted_words.append(forms.sorted_words)
        self._form_words.append(frozenset(tokens))
        self._word_counts.append(form.word_count)
        self._by_phonetic.setdefault(forms.phonetic, []).append(index)
        word_count = form.word_count if form.middle_omitted else 0
        for word in {*tokens, *_joined_pairs(tokens)}:
            self._forms_by_word.setdefault((word, word_count), []).append(index)
            if word not in self._words_by_deletion.get(word, ()):
                for deletion in deletion_neighbourhood(word):
                    self._words_by_deletion.setdefault(deletion, []).append(word)

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
        tokens = comparison_tokens(name)
        if not tokens or limit <= 0:
            return []
        query = _query_forms(tokens)
        query_country = _query_country(country)
        query_is_common = len(tokens) <= 2 and all(t in self._common_words for t in tokens)
        cut_off = _similarity_cut_off(
            threshold, query_is_common, date_of_birth is not None, query_country is not None
        )
        if cut_off > 100.0:
            return []
        similarities = self._name_similarities(query, cut_off)
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
        candidates = self._candidates(query)
        texts = list(map(self._sorted_words.__getitem__, candidates))
        found: dict[int, tuple[float, str]] = {}
        query_words, word_count = frozenset(query.tokens), query.word_count
        word_counts, form_words = self._word_counts, self._form_words
        for _, sorted_similarity, position in process.extract(
            query.sorted_words,
            texts,
            scorer=fuzz.ratio,
            score_cutoff=max(0.0, cut_off - ALIGNMENT_BAND),
            limit=None,
        ):
            index, similarity = candidates[position], sorted_similarity
            # Sorting words puts a word with a typo in its first letter elsewhere ("tbdul"
            # sorts after "salam"): when a name differs from the query in one word only,
            # compare it again with the shared words aligned.
            if (
                word_counts[index] == word_count
                and similarity < 100.0
                and len(query_words & form_words[index]) == word_count - 1
            ):
                similarity = max(similarity, _aligned_similarity(query.tokens, form_words[index]))
            if similarity >= cut_off:
                found[index] = (similarity, "spelling")
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

    def _candidates(self, query: _QueryForms) -> list[int]:
        """The forms that share a word, up to one edit, with the query (blocking).

        A form can only reach the cut-off when most of its letters agree with the query's, so
        at least one of its words equals a query word up to one edit (after transliteration
        folding). Forms that share none are never compared: most of the list, for most names.
        """
        postings: list[tuple[int, ...]] = []
        by_deletion, by_word = self._words_by_deletion, self._postings
        word_count = min(query.word_count, _MAX_WORDS_FOR_OMISSIONS + 1)
        for token in (*query.tokens, *_joined_pairs(query.tokens)):
            # One- and two-letter words are one edit from hundreds of others: exact only. A
            # one-word name rests on that word alone: when it is long, allow it two typos.
            if len(token) <= 2:
                keys: Iterable[str] = (token,)
            elif query.word_count > 1 or not LONG_WORD_LETTERS <= len(token) <= _LONGEST_NAME_WORD:
                keys = deletion_neighbourhood(token)
            else:
                keys = {
                    key
                    for deletion in deletion_neighbourhood(token)
                    for key in deletion_neighbourhood(deletion)
                }
            similar = set().union(*(by_deletion.get(key, ()) for key in keys))
            postings.extend(by_word.get((word, word_count), ()) for word in similar)
        return list(set().union(*postings))

    def _all_similarities(self, query: _QueryForms, cut_off: float) -> dict[int, tuple[float, str]]:
        """Spelling similarity against every eligible form, unblocked and unaligned: the
        reference the tests hold the blocked path to."""
        found: dict[int, tuple[float, str]] = {}
        for _, similarity, index in process.extract(
            query.sorted_words,
            self._sorted_words,
            scorer=fuzz.ratio,
            score_cutoff=cut_off,
            limit=None,
        ):
            form = self._forms[index]
            if not form.middle_omitted or form.word_count == query.word_count:
                found[index] = (similarity, "spelling")
        return found


def _aligned_similarity(tokens: list[str], listed_words: frozenset[str]) -> float:
    """Indel similarity with the shared words first, then the query's other word(s) against
    the listed name's other word(s)."""
    shared = sorted(listed_words.intersection(tokens))
    rest_of_query = sorted(token for token in tokens if token not in listed_words)
    rest_of_listed = sorted(listed_words.difference(tokens))
    return fuzz.ratio(" ".join(shared + rest_of_query), " ".join(shared + rest_of_listed))


def _joined_pairs(tokens: list[str]) -> list[str]:
    return [first + second for first, second in pairwise(tokens)]


def _similarity_cut_off(
    threshold: float, query_is_common: bool, has_date_of_birth: bool, has_country: bool
) -> float:
    """The lowest name similarity that could still reach `threshold` with this query's evidence.

    Only the bonuses this query can earn are credited, and a common name's penalty is certain,
    so "Ahmad Hasan" without a date of birth or country compares only against near-identical
    names. A margin of 0.1 covers the rounding of scores.
    """
    if threshold <= 0:
        return 0.0
    reachable = (DATE_OF_BIRTH_EXACT_BONUS if has_date_of_birth else 0.0) + (
        COUNTRY_MATCHES_BONUS if has_country else 0.0
    )
    penalty = COMMON_NAME_PENALTY if query_is_common else 0.0
    return max(0.0, threshold - reachable + penalty - 0.1)


def _common_words(forms: list[_NameForm]) -> frozenset[str]:
    entries_by_word: dict[str, set[str]] = {}
    for form in forms:
        if not form.middle_omitted:
            for word in comparison_tokens(form.listed_text):
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
