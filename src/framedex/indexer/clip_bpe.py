"""CLIP's byte-level BPE tokenizer in plain Python: the same token ids as open_clip, no torch.

open_clip's default ``SimpleTokenizer`` imports torch (it returns a ``LongTensor``), and importing
open_clip costs seconds. A query only needs a few dozen token ids, so this module re-implements
the algorithm from its description (Radford et al. 2019, section 2.2; Sennrich et al. 2016):

1. clean the text: ftfy, HTML unescape (twice), collapse whitespace, lower-case;
2. split it with CLIP's pre-tokenisation regex (contractions, letter runs, single digits,
   punctuation runs);
3. map each piece's UTF-8 bytes to 256 printable stand-in characters, mark the word end with
   ``</w>``, and merge adjacent symbols by the merge ranks of ``bpe_simple_vocab_16e6.txt.gz``
   until no ranked pair is left;
4. frame with ``<start_of_text>`` / ``<end_of_text>``, truncate to ``context_length`` keeping
   the end-of-text token last, zero-pad.

The merges file is the one inside the installed open_clip package, found with
``importlib.util.find_spec`` (which locates a package without executing it).
``tests/test_text_fast.py`` checks ids against ``open_clip.get_tokenizer`` on a varied corpus.

Example::

    tok = ClipTokenizer(context_length=77)
    tok(["a red circle"])       # (1, 77) int64: [[49406, 320, 736, 7117, 49407, 0, ...]]
"""

from __future__ import annotations

import html
import itertools
import string
import threading
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from framedex.errors import ModelLoadError, check
from framedex.indexer import open_clip_files
from framedex.indexer.open_clip_files import BPE_FILE

SOT, EOT = "<start_of_text>", "<end_of_text>"
#: CLIP's vocabulary is 49,408 ids = 256 byte symbols + 256 word-final ones + 48,894 merges + 2
#: specials; the file holds more merges than that, and open_clip reads only its first 48,894
#: lines after the version header.
_N_MERGES = 49408 - 512 - 2
#: Distinct pieces remembered per tokenizer (queries repeat words; open_clip's cache is unbounded).
_CACHE_SIZE = 50_000
_NO_RANK = float("inf")

# CLIP's pre-tokenisation: the two specials (so a literal "<end_of_text>" stays one token),
# English contractions, runs of letters, single digits, runs of other non-space characters.
# ``regex`` (not ``re``) for the Unicode classes \p{L} and \p{N}; IGNORECASE as in CLIP.
_PATTERN = SOT + "|" + EOT + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def find_bpe_vocab() -> Path:
    """The merges file inside the installed open_clip package, located without importing it.

    Raises:
        ModelLoadError: open_clip is not installed, or its package has no merges file.
    """
    path = open_clip_files.bpe_vocab()
    if path is None:
        raise ModelLoadError(f"cannot tokenize: {BPE_FILE} not found in the open_clip package; "
                             "install open_clip_torch (pip install open_clip_torch)")
    return path


def _byte_symbols() -> tuple[list[int], dict[int, str]]:
    """CLIP's reversible byte -> character table, and the order of bytes in the vocabulary.

    Bytes that are printable Latin-1 ("!".."~", "¡".."¬", "®".."ÿ") stand for themselves, in
    that order; the other 68 (controls, space, NBSP, soft hyphen) follow in byte order, mapped
    to U+0100 upward, so BPE symbols never contain whitespace or control characters.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    kept = set(printable)
    others = [b for b in range(256) if b not in kept]
    symbol = {b: chr(b) for b in printable}
    symbol.update({b: chr(256 + i) for i, b in enumerate(others)})
    return printable + others, symbol


@lru_cache(maxsize=4)
def _load_vocab(path: str) -> tuple[dict[str, int], dict[str, int]]:
    """(symbol -> id, "first second" merge -> rank) from a merges file; shared by tokenizers.

    Only the first 48,894 merges are used, which sit in the first ~630 kB of the ~4 MB
    decompressed file, so decompression stops there; the dicts are built from the raw lines
    (C-speed ``dict(zip(...))``): about 30 ms instead of 160 ms for split-and-tuple.
    """
    needed = _N_MERGES + 2  # the version header, the merges, and the newline that ends the last
    chunks: list[bytes] = []
    lines_seen = 0
    try:
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
        with open(path, "rb") as fh:
            while lines_seen < needed and not inflate.eof:
                data = fh.read(1 << 16)
                if not data:
                    break
                chunks.append(inflate.decompress(data))
                lines_seen += chunks[-1].count(b"\n")
        lines = b"".join(chunks).decode("utf-8").split("\n")[1 : _N_MERGES + 1]
    except (OSError, zlib.error, UnicodeDecodeError) as ex:
        raise ModelLoadError(f"cannot read the BPE merges file {path}: {ex}") from ex
    merges = "\n".join(lines)
    if len(lines) != _N_MERGES or merges.count(" ") != _N_MERGES:
        raise ModelLoadError(f"cannot read the BPE merges file {path}: expected {_N_MERGES} "
                             "lines of two symbols; reinstall open_clip_torch")
    order, symbol = _byte_symbols()
    singles = [symbol[b] for b in order]
    ids = {s: i for i, s in enumerate([*singles, *(s + "</w>" for s in singles)])}
    # A merged symbol's id is 512 + its merge's rank ("i n" -> "in"); with duplicates the later
    # merge's id wins, as in a dict built from the whole vocabulary list.
    ids.update(zip(merges.replace(" ", "").split("\n"), range(512, 512 + _N_MERGES), strict=True))
    ids[SOT], ids[EOT] = 512 + _N_MERGES, 513 + _N_MERGES
    return ids, dict(zip(lines, range(_N_MERGES), strict=True))


def _fix_text(text: str) -> str:
    # ftfy repairs mojibake, odd widths, curly quotes, control and terminal-escape characters,
    # and HTML entities; none of these can occur in printable ASCII without "&", so the common
    # query skips it. ftfy is then imported only for text that may need it (~65 ms here).
    if text.isascii() and text.isprintable() and "&" not in text:
        return text
    import ftfy

    return ftfy.fix_text(text)


def _basic_clean(text: str) -> str:
    # open_clip unescapes HTML twice after ftfy (which may already have unescaped once).
    return html.unescape(html.unescape(_fix_text(text))).strip()


def _clean_lower(text: str) -> str:
    return " ".join(_basic_clean(text).split()).lower()


def _clean_whitespace(text: str) -> str:
    return " ".join(_basic_clean(text).split())


_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _clean_canonicalize(text: str) -> str:
    # big_vision's prompt canonicalisation (used by some open_clip configs): no ASCII
    # punctuation, "_" as a space, lower case, single spaces.
    text = _basic_clean(text).replace("_", " ").translate(_NO_PUNCTUATION).lower()
    return " ".join(text.split())


#: open_clip's ``tokenizer_kwargs={"clean": ...}`` choices; "lower" is its default.
CLEANERS: dict[str, Callable[[str], str]] = {
    "lower": _clean_lower,
    "whitespace": _clean_whitespace,
    "canonicalize": _clean_canonicalize,
}


class ClipTokenizer:
    """CLIP's BPE tokenizer (open_clip's ``SimpleTokenizer`` without its reduction modes).

    Args:
        context_length: length of each output row (77 for CLIP); at least 2.
        clean: text cleaning, one of :data:`CLEANERS` (open_clip's default is ``lower``).
        bpe_path: merges file; None means the one inside the installed open_clip.

    Raises:
        ConfigError: a bad ``context_length`` or ``clean``.
        ModelLoadError: the merges file cannot be found or read.
    """

    def __init__(self, context_length: int = 77, clean: str = "lower",
                 bpe_path: str | Path | None = None):
        check(isinstance(context_length, int) and context_length >= 2, "context_length",
              context_length, "must be an integer >= 2 (room for the start and end tokens)")
        check(clean in CLEANERS, "clean", clean, f"must be one of {', '.join(CLEANERS)}")
        import regex

        self.context_length = context_length
        self._clean = CLEANERS[clean]
        self._ids, self._ranks = _load_vocab(str(bpe_path or find_bpe_vocab()))
        self.sot_token_id = self._ids[SOT]
        self.eot_token_id = self._ids[EOT]
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        order, symbol = _byte_symbols()
        # UTF-8 bytes -> stand-in characters in one str.translate (bytes decoded as Latin-1).
        self._bytes_to_symbols = {b: symbol[b] for b in order}
        self._cache: dict[str, list[int]] = {SOT: [self.sot_token_id], EOT: [self.eot_token_id]}
        self._lock = threading.Lock()

    @property
    def vocab_size(self) -> int:
        """Number of token ids (49,408 for CLIP's vocabulary)."""
        return len(self._ids)

    def _merge(self, piece: str) -> list[str]:
        """BPE on one pre-token: repeatedly merge the best-ranked adjacent pair everywhere."""
        word = [*piece[:-1], piece[-1] + "</w>"]
        ranks = self._ranks
        while len(word) > 1:
            rank, first, second = min((ranks.get(f"{a} {b}", _NO_RANK), a, b)
                                      for a, b in itertools.pairwise(word))
            if rank == _NO_RANK:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):  # left to right, non-overlapping ("a a a" -> "aa a")
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def _piece_ids(self, piece: str) -> list[int]:
        ids = self._cache.get(piece)
        if ids is None:
            symbols = piece.encode("utf-8").decode("latin-1").translate(self._bytes_to_symbols)
            ids = [self._ids[s] for s in self._merge(symbols)]
            with self._lock:
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache = {SOT: [self.sot_token_id], EOT: [self.eot_token_id]}
                self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without the start/end tokens, truncation or padding."""
        out: list[int] = []
        for piece in self._pattern.findall(self._clean(text)):
            out.extend(self._piece_ids(piece))
        return out

    def __call__(self, texts: str | Sequence[str],
                 context_length: int | None = None) -> np.ndarray:
        """Tokenize texts into a zero-padded (n, context_length) int64 array.

        A text longer than the context is cut to its first ``context_length - 1`` tokens
        followed by ``<end_of_text>`` (the end token must stay last: the text tower reads its
        output there).

        Args:
            texts: one text or several.
            context_length: row length; None means the tokenizer's.

        Returns:
            (n, context_length) int64 token ids.
        """
        if isinstance(texts, str):
            texts = [texts]
        length = context_length or self.context_length
        out = np.zeros((len(texts), length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > length:
                ids = ids[:length]
                ids[-1] = self.eot_token_id
            out[row, : len(ids)] = ids
        return out

