"""Transliteration folding: the same name written through Russian, French or English spelling
habits must compare equal; different names must stay different."""

from __future__ import annotations

import pytest

from paymesh.risk.screening import normalise_name
from paymesh.risk.screening.normalise import comparison_tokens, fold_word


class TestFoldWord:
    @pytest.mark.parametrize(
        ("written", "folded"),
        [
            ("khassan", "hasan"),
            ("hassan", "hasan"),
            ("dzhamal", "jamal"),
            ("djamal", "jamal"),
            ("haqqani", "hakani"),
            ("khakkani", "hakani"),
            ("wali", "vali"),
            ("youssouf", "iusuf"),
            ("yusuf", "iusuf"),
            ("mustapha", "mustafa"),
            ("maxamed", "maksamed"),
            ("chol", "chol"),
        ],
    )
    def test_spelling_habits_fold_to_one_form(self, written: str, folded: str) -> None:
        assert fold_word(written) == folded


class TestComparisonTokens:
    @pytest.mark.parametrize(
        ("cyrillic", "latin"),
        [
            ("Ибрахим Хассан", "Ibrahim Hassan"),
            ("Джалалуддин Хаккани", "Jalaluddin Haqqani"),
            ("Мохаммад Салим", "Mohammad Salim"),
            ("Хванг Сок-Хва", "Hwang Sok-Hwa"),
            ("Джо Йонг Чол", "Jo Yong Chol"),
            ("Максамед Кабдуллаах", "Maxamed Cabdullaah"),
        ],
    )
    def test_a_cyrillic_round_trip_meets_its_latin_form(self, cyrillic: str, latin: str) -> None:
        assert comparison_tokens(cyrillic) == comparison_tokens(latin)

    def test_particles_are_dropped_after_folding(self) -> None:
        assert comparison_tokens("Хаджи Мухаммад Ашраф") == comparison_tokens("Muhammad Ashraf")

    @pytest.mark.parametrize("typo", ["Mohaoed", "Mohamedd", "Mohmed", "Muhamad"])
    def test_a_long_spelling_family_member_with_one_typo_still_folds(self, typo: str) -> None:
        assert comparison_tokens(typo) == comparison_tokens("Muhammad")

    @pytest.mark.parametrize(("first", "second"), [("Hamed", "Ahmed"), ("Omari", "Umar")])
    def test_short_names_one_letter_apart_stay_different(self, first: str, second: str) -> None:
        assert comparison_tokens(first) != comparison_tokens(second)

    def test_the_public_normal_form_is_unchanged(self) -> None:
        assert normalise_name("Mohammed Al-Hassan") == "muhammad hasan"
