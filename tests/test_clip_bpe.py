"""framedex's CLIP BPE tokenizer gives open_clip's token ids, without torch or open_clip."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framedex.errors import ConfigError
from framedex.indexer.clip_bpe import CLEANERS, ClipTokenizer, _fix_text
from framedex.synth.captions import random_caption, single_object_prompts

CORPUS = [
    "a red circle",
    "A RED Circle!!!",
    "Hello, World! It's 2024; isn't it? (yes) [no] {maybe} <b>bold</b>",
    "can't won't I'd we'll they've you're she's I'M",
    "3.14159 1,000,000 007 ½ ² ٣",
    "naïve café résumé Ångström straße ǅ",
    "日本語のテキスト 中文 한국어 русский текст ελληνικά עברית العربية",
    "emoji 🎉🎉 👩‍👩‍👧 🇫🇷 ❤️ and ☃",
    "“curly” ‘quotes’ ﬁ ligature ＦＵＬＬＷＩＤＴＨ …",  # noqa: RUF001 (the point of the case)
    "&amp;amp;amp; &lt;tag&gt; &quot;q&quot; &#39; &nbsp; & alone",
    "sÃ³ mojibake Ã©tÃ©",
    "tabs\tand\nnew\r\nlines\x0bvertical\x0cfeed   spaces",
    "terminal \x1b[31mred\x1b[0m escape \x07 bell \x00 nul",
    "<start_of_text> <END_OF_TEXT> <end_of_text>inside",
    "under_score snake_case kebab-case CamelCase",
    "aaaa aaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "https://example.com/path?q=1&x=2#frag user@example.com",
    "   leading and trailing   ",
    "x",
    "",
    "   ",
    "\u200b\u200d zero width",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "word " * 100,  # truncated at 77 and at 24
    "🎉" * 60,  # multi-token bytes, truncated mid-character
    *(p for p, _ in single_object_prompts()),
    *(random_caption("gray", [("star", "purple"), ("circle", "red")],
                     np.random.default_rng(i))[0] for i in range(20)),
]


@pytest.fixture(scope="module")
def open_clip_tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer


@functools.cache
def _tokenizers() -> tuple:
    from open_clip.tokenizer import SimpleTokenizer

    return ClipTokenizer(77), SimpleTokenizer()


@pytest.mark.parametrize("context_length", [77, 24, 5])
def test_ids_equal_open_clip_on_a_varied_corpus(open_clip_tokenizer, context_length):
    ours = ClipTokenizer(context_length)(CORPUS)
    theirs = open_clip_tokenizer(context_length=context_length)(CORPUS).numpy()
    assert ours.dtype == np.int64 and ours.shape == (len(CORPUS), context_length)
    for text, a, b in zip(CORPUS, ours, theirs, strict=True):
        assert a.tolist() == b.tolist(), text


def test_get_tokenizer_of_the_shipped_model_agrees():
    import open_clip

    from framedex.indexer.encoder import BUILTIN_MODELS

    theirs = open_clip.get_tokenizer(f"local-dir:{BUILTIN_MODELS['synthetic-shapes']}")
    np.testing.assert_array_equal(ClipTokenizer(24)(CORPUS), theirs(CORPUS).numpy())


def test_truncation_keeps_the_end_token_last_and_pads_with_zeros():
    tok = ClipTokenizer(8)
    long, short = tok(["one two three four five six seven eight nine", "hi"])
    assert long[0] == tok.sot_token_id and long[-1] == tok.eot_token_id
    assert (long[1:-1] != tok.eot_token_id).all()
    assert short.tolist()[:3] == [tok.sot_token_id, tok.encode("hi")[0], tok.eot_token_id]
    assert (short[3:] == 0).all()


@pytest.mark.parametrize("clean", sorted(CLEANERS))
def test_cleaning_modes_equal_open_clip(open_clip_tokenizer, clean):
    ours = ClipTokenizer(77, clean=clean)(CORPUS)
    theirs = open_clip_tokenizer(context_length=77, clean=clean)(CORPUS).numpy()
    np.testing.assert_array_equal(ours, theirs)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_unicode_text_equals_open_clip(text):
    ours, theirs = _tokenizers()
    assert ours([text]).tolist() == theirs([text]).tolist()


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="&"),
               max_size=80))
def test_ftfy_changes_nothing_in_printable_ascii_without_ampersand(text):
    """The tokenizer skips ftfy (and its import) for exactly these texts."""
    import ftfy

    assert _fix_text(text) == text == ftfy.fix_text(text)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ConfigError, match="context_length=1"):
        ClipTokenizer(1)
    with pytest.raises(ConfigError, match=r"clean='nope'.*lower"):
        ClipTokenizer(77, clean="nope")


def test_tokenizing_imports_neither_torch_nor_open_clip_nor_ftfy_for_plain_text():
    code = ("import sys; from framedex.indexer.clip_bpe import ClipTokenizer; "
            "print(ClipTokenizer(77)(['a red circle'])[0, :5].tolist()); "
            "print(sorted(m for m in ('torch', 'open_clip', 'ftfy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["[49406, 320, 736, 7117, 49407]", "[]"]
