"""Piper through the real supervisor, in its own real environment (its voice: the builtin ``joe``)."""

from tests.contract import adapter_contract

TestContract = adapter_contract("piper")


def test_the_opening_phrase_of_a_long_first_sentence_is_split_at_a_clause_or_after_four_words() -> None:
    from runtimes.adapters.piper import opening_phrase

    assert opening_phrase("Well, my dear friend, this is a long sentence indeed. Then more.") == [
        "Well, my dear friend,", "this is a long sentence indeed. Then more."]  # a clause break at 4-8 words
    assert opening_phrase("The first sentence of this paragraph is spoken now. Next.") == [
        "The first sentence of", "this paragraph is spoken now. Next."]
    assert opening_phrase("Short one. Then a much longer second sentence follows it here.") == [
        "Short one. Then a much longer second sentence follows it here."]  # a short first sentence already starts soon
