import math

import pytest

from iml.lm.metrics import exact_match, f1, gold_alternatives, normalize_answer, score


def test_normalize_lower_punct_articles_whitespace():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("  An apple a day  ") == "apple day"
    # articles only as whole words
    assert normalize_answer("Theatre and anvil") == "theatre and anvil"
    # punctuation removed before articles: "the-cat" -> "thecat" (SQuAD order), not "cat"
    assert normalize_answer("the-cat") == "thecat"
    assert normalize_answer("1st century BC.") == "1st century bc"
    assert normalize_answer("") == ""
    assert normalize_answer("the a an") == ""


def test_exact_match_basic():
    assert exact_match("Paris", "paris") == 1.0
    assert exact_match("The Paris.", "paris") == 1.0
    assert exact_match("Paris France", "Paris") == 0.0
    assert exact_match("", "") == 1.0
    assert exact_match("", "Paris") == 0.0
    assert exact_match("the", "") == 1.0  # both normalise to ""


def test_f1_multiset_hand_worked():
    # pred tokens [cat, cat], gold [cat]: overlap 1, P = 1/2, R = 1, F1 = 2/3
    assert f1("the cat cat", "cat") == pytest.approx(2 * (0.5 * 1) / (0.5 + 1))
    assert f1("the cat cat", "cat") == pytest.approx(0.6666666, abs=1e-6)
    # symmetric case: pred [cat], gold [cat, cat]: P = 1, R = 1/2
    assert f1("cat", "cat cat") == pytest.approx(2 / 3)
    # a set-based F1 would give 1.0 for both of these
    assert f1("cat cat", "cat") != pytest.approx(1.0)
    # partial overlap: pred [new, york, city], gold [york]: P=1/3, R=1 -> 0.5
    assert f1("New York City", "York") == pytest.approx(0.5)
    # [a b c] vs [b c d]: overlap 2, P=R=2/3
    assert f1("x y z", "y z w") == pytest.approx(2 / 3)
    assert f1("dog", "cat") == 0.0


def test_f1_empty_strings():
    assert f1("", "") == 1.0
    assert f1("", "cat") == 0.0
    assert f1("cat", "") == 0.0
    assert f1("the", "a") == 1.0  # both normalise to no tokens


def test_semicolon_alternatives_take_max():
    assert gold_alternatives("a;b") == ["a", "b"]
    assert gold_alternatives("Paris") == ["Paris"]
    assert exact_match("London", "Paris;London") == 1.0
    assert exact_match("Berlin", "Paris;London") == 0.0
    # max F1 over alternatives: "new york" vs "york city" (0.5) and "new york" (1.0)
    assert f1("new york", "york city;new york") == 1.0
    assert f1("new york city", "york;paris") == pytest.approx(0.5)


def test_score_means_and_n():
    out = score(["Paris", "the cat cat", ""], ["paris", "cat", "dog"])
    assert out["n"] == 3
    assert out["EM"] == pytest.approx(1 / 3)
    assert out["F1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_score_empty_and_mismatch():
    out = score([], [])
    assert out["n"] == 0 and math.isnan(out["EM"]) and math.isnan(out["F1"])
    with pytest.raises(ValueError):
        score(["a"], ["a", "b"])
