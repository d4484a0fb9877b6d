"""Why a text matched: a short window of it, HTML-escaped, with the query's words in <mark>."""

from __future__ import annotations

import html

from .terms import CJK, WORD, WordQuery, pieces, fold

# Characters of context kept on each side of the first match.
CONTEXT_CHARS = 60


def _cjk_runs(query: WordQuery) -> list[str]:
    """The query's CJK phrases as the strings they were cut from (北京 京会 会议 -> 北京会议)."""
    return [phrase[0] + "".join(pair[1:] for pair in phrase[1:]) for phrase in query.phrases
            if phrase and CJK.match(phrase[0])]


def match_spans(text: str, query: WordQuery) -> list[tuple[int, int]]:
    """Where in the text (character offsets) the query's words are, in order."""
    terms, prefix, runs = query.all_terms(), query.prefix, _cjk_runs(query)
    spans = []
    for word in WORD.finditer(text):
        folded = fold(word.group())
        aligned = len(folded) == len(word.group())  # else mark the whole word
        at = 0
        for piece, cjk in pieces(folded):
            start = word.start() + at if aligned else word.start()
            if cjk:
                for run in runs:
                    found = piece.find(run)
                    while found >= 0:
                        spans.append((start + found, start + found + len(run)) if aligned else word.span())
                        found = piece.find(run, found + len(run))
            elif piece in terms or (prefix is not None and piece.startswith(prefix)):
                spans.append((start, start + len(piece)) if aligned else word.span())
            at += len(piece)
    return sorted(set(spans))


def snippet(text: str, query: WordQuery, context: int = CONTEXT_CHARS) -> str:
    """The text around its first match, escaped, each match in <mark> (added after escaping)."""
    spans = match_spans(text, query)
    if not spans:
        cut = text[:2 * context]
        return html.escape(cut) + ("…" if len(text) > len(cut) else "")
    begin = max(0, spans[0][0] - context)
    end = min(len(text), spans[0][1] + context)
    parts, at = [], begin
    for start, stop in spans:
        if start < at or stop > end:
            continue
        parts.append(html.escape(text[at:start]))
        parts.append(f"<mark>{html.escape(text[start:stop])}</mark>")
        at = stop
    parts.append(html.escape(text[at:end]))
    return ("…" if begin > 0 else "") + "".join(parts) + ("…" if end < len(text) else "")


def plain_snippet(marked: str) -> str:
    """A snippet for a terminal: marks as [brackets], entities as the characters they stand for."""
    return html.unescape(marked.replace("<mark>", "[").replace("</mark>", "]"))
