"""Offline, deterministic describe backend: a rule-based rewriter and instruction writer.

`rewrite` parses an instruction into one edit (replace, add, remove, attribute, action, background,
condition, style, exchange; several joined by "and"/"then" apply in order) and applies it to the
source caption with plain string surgery. When the instruction names an object the caption does not
mention, the default is to apply the edit anyway by appending a phrase ("... with a dog",
"... without a pillow", "... with a red car"), because captions often omit objects the image shows;
`strict=True` raises DescribeError(reason="not_found") instead.

`write_instructions` picks one edit per caption with a `random.Random` seeded by a sha256 of the
caption, so its output is the same in every process, and computes the target with `rewrite`.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from regionedit_jax.describe.base import DescribeError, Describer, Edit, check_text
from regionedit_jax.describe.vocab import (
    _ACTIONS,
    _ADD_OBJECTS,
    _BACKGROUNDS,
    _COLOUR_MODIFIERS,
    _COLOURABLE,
    _CONDITION_EDITS,
    _CONDITIONS,
    _DEFINITE,
    _EDIT_COLOURS,
    _GENERAL,
    _GROUPS,
    _IMAGE_NOUNS,
    _IRREGULAR,
    _KIND_WEIGHTS,
    _KNOWN_GENERAL,
    _LOCATION_START,
    _MASS,
    _MATERIALS,
    _MEDIA,
    _MEDIUM_HEADS,
    _MEDIUM_PREFIX,
    _NOUN_GROUP,
    _PLURAL_DETS,
    _POLITE_PREFIX,
    _POLITE_SUFFIX,
    _PREPS,
    _PRON,
    _PRONOUNS,
    _SINGULAR,
    _SIZES,
    _STEP_SPLIT,
    _STOP,
    _STYLE_EDITS,
    _TRANSITIVE,
    _UNCHANGING,
    _VAGUE,
    _WEARABLES,
    _WEARERS,
    COLOURS,
    DETERMINERS,
)

# Text helpers ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['&-][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")


def _pluralize(word: str) -> str:
    low = word.lower()
    if low in _IRREGULAR:
        return word[: len(word) - len(low)] + _IRREGULAR[low]
    if low in _UNCHANGING or _is_plural(word):
        return word
    if re.search(r"(?:s|x|z|ch|sh)$", low):
        return word + "es"
    if re.search(r"[^aeiou]y$", low):
        return word[:-1] + "ies"
    return word + "s"


def _singularize(word: str) -> str:
    low = word.lower()
    if low in _SINGULAR:
        return _SINGULAR[low]
    if low.endswith("ies") and len(low) > 4:
        return word[:-3] + "y"
    if re.search(r"(?:ss|x|z|ch|sh)es$", low):
        return word[:-2]
    if low.endswith("s") and not re.search(r"(?:ss|us|is|ous)$", low) and len(low) > 2:
        return word[:-1]
    return word


def _is_plural(word: str) -> bool:
    low = word.lower()
    if low in _SINGULAR:
        return True
    return low not in _UNCHANGING and _singularize(low) != low


def _last_word_phrase(phrase: str, fn: Callable[[str], str]) -> str:
    words = phrase.split()
    return " ".join([*words[:-1], fn(words[-1])]) if words else phrase


def _a_or_an(word: str) -> str:
    low = word.lower()
    if re.match(r"(?:hour|honest|honou?r|heir)", low):
        return "an"
    if re.match(r"(?:uni|use|usu|uti|eu|one|once|ure|ufo)", low):
        return "a"
    return "an" if re.match(r"[aeiou8]", low) else "a"


def _split_det(phrase: str) -> tuple[str | None, str]:
    words = phrase.split()
    if len(words) > 1 and words[0].lower() in DETERMINERS:
        return words[0].lower(), " ".join(words[1:])
    return None, phrase


def _with_article(phrase: str) -> str:
    """`phrase` with "a"/"an" in front when it is a bare singular count noun phrase."""
    words = phrase.split()
    if not words:
        return phrase
    first, last = words[0], words[-1]
    if (
        first.lower() in DETERMINERS
        or first[0].isdigit()
        or first[0].isupper()
        or _is_plural(last)
        or last.lower() in _MASS
        or phrase.lower() in _MASS
    ):
        return phrase
    return f"{_a_or_an(first)} {phrase}"


def _fix_article_before(text: str, pos: int) -> str:
    """Make an "a"/"an" right before `pos` agree with the word starting at `pos`."""
    m = re.search(r"\b(a|an|A|An)(\s+)$", text[:pos])
    word = re.match(r"[\w'-]+", text[pos:])
    if not m or not word:
        return text
    article = _a_or_an(word.group(0))
    if m.group(1)[0].isupper():
        article = article.capitalize()
    return text[: m.start()] + article + m.group(2) + text[pos:]


def _tidy(text: str) -> str:
    text = " ".join(text.split())
    text = re.sub(r"\s+([,.;])", r"\1", text)
    text = re.sub(r",(?:\s*,)+", ",", text)
    text = re.sub(r"^[\s,]+|[\s,]+$", "", text)
    return re.sub(r"\s+(?:and|with|of)$", "", text)


def _lower_first(text: str) -> str:
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def _np(text: str) -> str:
    """Clean a noun phrase taken from an instruction."""
    text = text.strip(" \"'\u201c\u201d\u2018\u2019,")
    text = re.sub(r"\s+(?:too|as well|also)$", "", text, flags=re.I)
    text = re.sub(
        r"\s+(?:on|to|at|in)\s+the\s+(?:left|right|top|bottom|middle|center|centre|front|back)"
        r"(?:\s+side)?$",
        "",
        text,
        flags=re.I,
    )
    text = re.sub(r"^all\s+(?:of\s+)?", "", text, flags=re.I)
    words = text.split()
    if words and words[0].lower() in DETERMINERS:
        words[0] = words[0].lower()
    return " ".join(words)


def _core(phrase: str) -> str:
    """`phrase` without leading determiners and possessives."""
    words = phrase.split()
    while len(words) > 1 and words[0].lower() in DETERMINERS:
        words = words[1:]
    return " ".join(words)


# Locating noun phrases in a caption -----------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    """A noun phrase in a caption: [start, end) with determiner, modifiers and matched words."""

    start: int  # first character of the phrase (its determiner when it has one)
    det: str | None  # the determiner text, if any
    det_end: int  # where modifiers begin (after the determiner or a possessive)
    match_start: int  # first character of the words matched from the instruction
    head_start: int  # first character of the head noun (the last matched word)
    end: int  # one past the head noun
    plural: bool


def _is_stop(word: str) -> bool:
    low = word.lower()
    return (
        not word[0].isalnum()
        or low in _STOP
        or (low.endswith("ing") and len(low) > 4 and low not in ("ceiling", "building", "painting"))
    )


def _span_at(caption: str, start: int, end: int) -> _Span:
    before = list(_TOKEN.finditer(caption[:start]))
    det, np_start, det_end = None, start, start
    walked: list[re.Match[str]] = []
    for tok in reversed(before[-4:]):
        word = tok.group(0)
        if word.lower() in DETERMINERS:
            det, np_start = word, tok.start()
            det_end = det_end if det_end != start else tok.end()
            break
        if _is_stop(word):
            break
        if word.lower().endswith(("'s", "s'")) and det_end == start:
            det_end = tok.end()
        walked.append(tok)
    if det is None and walked:
        np_start = walked[-1].start()
        det_end = det_end if det_end != start else np_start
    words = list(_TOKEN.finditer(caption[start:end]))
    head_start = start + words[-1].start() if words else start
    plural = _is_plural(caption[head_start:end])
    return _Span(np_start, det, det_end, start, head_start, end, plural)


def _is_modifier(caption: str, end: int) -> bool:
    """Whether the word ending at `end` modifies a following noun ("tree" in "tree branch")."""
    nxt = _TOKEN.match(caption, end + len(caption[end:]) - len(caption[end:].lstrip()))
    if nxt is None:
        return False
    return not _is_stop(nxt.group(0)) and nxt.group(0).lower() not in DETERMINERS


def _search(caption: str, form: str) -> re.Match[str] | None:
    """First occurrence of `form` as a head noun, else its first occurrence at all."""
    found = list(re.finditer(rf"(?<![\w'-]){re.escape(form)}(?![\w-])", caption, re.I))
    heads = [m for m in found if not _is_modifier(caption, m.end())]
    return (heads or found or [None])[0]


def _main_subject(caption: str) -> _Span | None:
    prefix = _MEDIUM_PREFIX.match(caption)
    pos = prefix.end() if prefix else 0
    head: re.Match[str] | None = None
    first: re.Match[str] | None = None
    for tok in _TOKEN.finditer(caption, pos):
        word = tok.group(0)
        if first is None and word.lower() in DETERMINERS:
            first = tok
            continue
        if _is_stop(word):
            break
        first = first or tok
        head = tok
    if head is None:
        return None
    return _span_at(caption, head.start(), head.end())


def _find(caption: str, phrase: str) -> _Span | None:
    """Locate the noun phrase `phrase` (or its head noun, singular or plural) in `caption`."""
    core = _core(phrase)
    if not core:
        return None
    if core.lower() in _PRONOUNS:
        return _main_subject(caption)
    words = core.split()
    forms = [core, _last_word_phrase(core, _pluralize), _last_word_phrase(core, _singularize)]
    if len(words) > 1:
        forms += [words[-1], _pluralize(words[-1]), _singularize(words[-1])]
    for form in dict.fromkeys(forms):
        m = _search(caption, form)
        if m:
            return _span_at(caption, m.start(), m.end())
    return None


def _not_found(caption: str, phrase: str) -> DescribeError:
    return DescribeError("not_found", f"{_core(phrase)!r} is not mentioned in the caption {caption!r}")


# Caption operations ---------------------------------------------------------------------------


def _append_with(caption: str, obj: str) -> str:
    """`caption` with "with obj", or "and obj" when it already ends in a simple with-list."""
    at = caption.lower().rfind(" with ")
    if at >= 0:
        tail = [t.group(0) for t in _TOKEN.finditer(caption[at + 6 :])]
        if tail and not any(_is_stop(w) and w.lower() != "and" for w in tail):
            return f"{caption} and {obj}"
    return f"{caption} with {obj}"


def _insert_with(caption: str, pos: int, obj: str) -> str:
    after = caption[pos:]
    m = re.match(r"\s+with\s+", after, re.I)
    if m:
        return f"{caption[:pos]} with {obj} and {after[m.end() :]}"
    return f"{caption[:pos]} with {obj}{after}"


def _replace_span(caption: str, span: _Span, new: str) -> str:
    """Replace the matched words of `span` by the noun phrase `new`, keeping number and article."""
    new_det, new_core = _split_det(new)
    if span.plural and new_det not in _PLURAL_DETS and not _is_plural(new_core.split()[-1]):
        new_core = _last_word_phrase(new_core, _pluralize)
        new_det = None
    new_plural = new_det in _PLURAL_DETS or _is_plural(new_core.split()[-1])
    det_adjacent = span.det is not None and not caption[span.det_end : span.match_start].strip()
    if det_adjacent and new_det in _PLURAL_DETS:
        return caption[: span.start] + f"{new_det} {new_core}" + caption[span.end :]
    if det_adjacent and span.det is not None and span.det.lower() in ("a", "an"):
        if new_plural and not span.plural:
            return caption[: span.start] + new_core + caption[span.end :]
        text = caption[: span.match_start] + new_core + caption[span.end :]
        return _fix_article_before(text, span.match_start)
    return caption[: span.match_start] + new_core + caption[span.end :]


def _replace(caption: str, x: str, y: str, strict: bool) -> str | None:
    x, y = _np(x), _np(y)
    if not _core(x) or not _core(y):
        return None
    core = _core(x).lower()
    if core in _PRONOUNS:
        return _apply_to_whole(caption, y, strict)
    if core in ("background", "backdrop", "setting", "scenery", "location", "place"):
        return _background(caption, y)
    if core in ("season", "weather", "time", "time of day", "lighting", "light"):
        cond = _condition(y)
        return _set_condition(caption, cond) if cond else None
    if core in ("style", "art style", "medium"):
        return _style(caption, y)
    y_det, y_core = _split_det(y)
    if y_det is None:
        attr = _attribute(y)
        if attr:
            return _set_attribute(caption, x, attr, strict)
    span = _find(caption, x)
    if span is None:
        if strict:
            raise _not_found(caption, x)
        return _append_with(caption, _with_article(y))
    if caption[span.head_start : span.end].lower() in ("sky", "skies"):
        y_core = re.sub(r"\s+sky$", "", y_core, flags=re.I)
        det = span.det if span.det and span.det.lower() == "the" else None
        sky = f"{det} {y_core} sky" if det else _with_article(f"{y_core} sky")
        return caption[: span.start] + sky + caption[span.end :]
    return _replace_span(caption, span, y)


def _exchange(caption: str, a: str, b: str, strict: bool) -> str | None:
    span_a, span_b = _find(caption, _np(a)), _find(caption, _np(b))
    if span_a is None or span_b is None:
        return _replace(caption, a, b, strict)
    first, second = sorted((span_a, span_b), key=lambda s: s.match_start)
    if first.end > second.match_start:
        return None
    words_a = caption[first.match_start : first.end]
    words_b = caption[second.match_start : second.end]
    text = (
        caption[: first.match_start]
        + words_b
        + caption[first.end : second.match_start]
        + words_a
        + caption[second.end :]
    )
    shift = len(words_b) - len(words_a)
    text = _fix_article_before(text, second.match_start + shift)
    return _fix_article_before(text, first.match_start)


def _remove(caption: str, x: str, strict: bool) -> str | None:
    x = _np(x)
    core = _core(x).lower()
    if not core:
        return None
    if core in ("background", "backdrop"):
        return _plain_background(caption)
    if core in ("color", "colour", "colors", "colours"):
        return _set_medium(caption, _MEDIA["black and white"])
    span = _find(caption, x)
    if span is None:
        if strict:
            raise _not_found(caption, x)
        return f"{caption} without {_with_article(_core(x))}"
    prefix = _MEDIUM_PREFIX.match(caption)
    subject_at = prefix.end() if prefix else 0
    s, e = span.start, span.end
    while _is_modifier(caption, e):
        e = _TOKEN.search(caption, e).end()
    before, after = caption[:s], caption[e:]
    m = re.search(r"(?:,\s*)?\band\s+$", before, re.I)
    if m:
        return caption[: m.start()] + after
    m = re.match(r"\s*,?\s*and\s+", after, re.I)
    if m and (s == subject_at or re.search(r"(?:\bwith|,)\s*$", before, re.I)):
        return before + after[m.end() :]
    if s == subject_at:
        for i, tok in enumerate(_TOKEN.finditer(after)):
            if i >= 5:
                break
            if tok.group(0).lower() in DETERMINERS:
                return before + after[tok.start() :]
        return before + "an empty scene"
    m = re.search(
        r"(?:,\s*)?\b(?:in front of|on top of|next to|close to|along with|together with|"
        r"as well as|with|of|holding|wearing|carrying|eating|riding|near|beside|behind|by|on|"
        r"in|under|above|below|over|at|inside|beneath|underneath|atop|into|onto|against|"
        r"between|among|around|across|through|from|for|like)\s+$",
        before,
        re.I,
    )
    if m:
        return caption[: m.start()] + after
    return before + after


def _attribute(text: str) -> tuple[str, str] | None:
    """(category, adjective) for a colour, material or size phrase; None otherwise."""
    low = " ".join(text.lower().split())
    low = re.sub(r"^(?:more|very|much|a bit|slightly|really|look|looks|be)\s+", "", low)
    low = re.sub(r"\s+(?:in colou?r|colou?red|colou?r)$", "", low)
    m = re.fullmatch(r"(?:made\s+(?:out\s+)?of|out\s+of|made\s+from|from)\s+(\w+)", low)
    if m:
        material = m.group(1)
        return ("material", _MATERIALS.get(material, material))
    if low in ("black and white", "black & white"):
        return ("colour", "black and white")
    words = low.split()
    if words and words[-1] in COLOURS and all(w in _COLOUR_MODIFIERS for w in words[:-1]):
        return ("colour", low)
    if len(words) == 1:
        word = words[0]
        if word in _MATERIALS:
            return ("material", _MATERIALS[word])
        if word in _SIZES:
            return ("size", _SIZES[word])
        if word in _GENERAL:
            return ("general", _GENERAL[word])
    return None


def _category(word: str) -> str | None:
    low = word.lower()
    if low in COLOURS or low in _COLOUR_MODIFIERS:
        return "colour"
    if low in _MATERIALS.values():
        return "material"
    if low in _SIZES.values():
        return "size"
    if low in _KNOWN_GENERAL:
        return "general"
    return None


_ORDER = {"size": 0, "general": 1, "colour": 2, "material": 3}


def _set_attribute(caption: str, x: str, attr: tuple[str, str], strict: bool) -> str:
    category, adjective = attr
    span = _find(caption, x)
    if span is None:
        if strict:
            raise _not_found(caption, x)
        return _append_with(caption, _with_article(f"{adjective} {_core(x)}"))
    mods = list(_TOKEN.finditer(caption, span.det_end, span.head_start))
    same = [t for t in mods if _category(t.group(0)) == category]
    if same:
        start, end = same[0].start(), same[-1].end()
        text = caption[:start] + adjective + caption[end:]
        return _fix_article_before(text, start)
    at = span.head_start
    for tok in mods:
        cat = _category(tok.group(0))
        if cat is None or _ORDER[cat] > _ORDER[category]:
            at = tok.start()
            break
    text = caption[:at] + adjective + " " + caption[at:]
    return _fix_article_before(text, at)


def _set_action(caption: str, x: str, participle: str, obj: str | None, strict: bool) -> str:
    span = _find(caption, x)
    phrase = f"{participle} {_with_article(_np(obj))}" if obj else participle
    if span is None:
        if strict:
            raise _not_found(caption, x)
        return _append_with(caption, f"{_with_article(_core(_np(x)))} {phrase}")
    after = caption[span.end :]
    nxt = re.match(r"\s+(\w+ing)\b", after)
    if obj is None and nxt and _is_stop(nxt.group(1)):
        return caption[: span.end] + " " + phrase + after[nxt.end() :]
    return caption[: span.end] + " " + phrase + after


def _attach(caption: str, x: str, obj: str, strict: bool) -> str:
    obj = _with_article(_np(obj))
    span = _find(caption, x)
    if span is None:
        if strict:
            raise _not_found(caption, x)
        return _append_with(caption, obj)
    return _insert_with(caption, span.end, obj)


_BACKGROUND_PHRASES = (
    re.compile(r"\s*,?\s*\bwith\s+(?:(?!\bwith\b)[^,])*?\s+in\s+the\s+background\b", re.I),
    re.compile(
        r"\s*,?\s*\b(?:with|against|on|in front of|over)\s+(?:(?:a|an|the)\s+)?"
        r"(?:[\w-]+\s+){0,3}?(?:background|backdrop)\b",
        re.I,
    ),
)


def _strip_background(caption: str) -> str:
    for pattern in _BACKGROUND_PHRASES:
        caption = pattern.sub("", caption)
    return caption


def _background(caption: str, y: str) -> str | None:
    y = re.sub(r"\s+(?:background|backdrop|setting|scene)$", "", _np(y), flags=re.I)
    if not _core(y):
        return None
    attr = _attribute(y)
    if attr and attr[0] == "colour":
        phrase = f"with {_a_or_an(attr[1])} {attr[1]} background"
    elif y.lower() in ("plain", "white", "empty", "blank"):
        return _plain_background(caption)
    else:
        phrase = f"with {_with_article(y)} in the background"
    return f"{_strip_background(caption)} {phrase}"


def _plain_background(caption: str) -> str:
    span = _main_subject(caption)
    kept = caption[: span.end] if span else _strip_background(caption)
    return f"{kept} on a plain white background"


def _condition(text: str) -> tuple[str, str] | None:
    low = " ".join(text.lower().split())
    for _ in range(3):
        if low in _CONDITIONS:
            return _CONDITIONS[low]
        low = re.sub(r"^(?:a|an|the|at|in|during|on|into|to|like|more|very|it is|it's)\s+", "", low)
        low = re.sub(r"\s+(?:day|time|season|weather|scene|sky)$", "", low)
    return _CONDITIONS.get(low)


def _set_condition(caption: str, cond: tuple[str, str]) -> str:
    group, phrase = cond
    for other_group, other in set(_CONDITIONS.values()):
        if other_group == group:
            caption = re.sub(rf"\s*,?\s*\b{re.escape(other)}\b", "", caption, flags=re.I)
    return f"{caption} {phrase}"


def _medium(text: str) -> str | None:
    low = " ".join(text.lower().split())
    low = re.sub(r"^(?:a|an|the|as|into|in|like|look like)\s+", "", low)
    low = re.sub(r"^(?:a|an)\s+", "", low)
    low = re.sub(r"[\s-](?:style|version|image|effect|filter)$", "", low)
    if low in _MEDIA:
        return _MEDIA[low]
    words = low.split()
    if words and words[-1] in _MEDIUM_HEADS and len(words) <= 3:
        return _with_article(low)
    return None


def _set_medium(caption: str, medium: str) -> str:
    rest = _MEDIUM_PREFIX.sub("", caption, count=1)
    return f"{medium} of {_lower_first(rest)}"


def _strip_style(caption: str) -> str:
    caption = re.sub(r",?\s*in the style of .*$", "", caption, flags=re.I)
    return re.sub(r",?\s*in [\w\s'.-]+ style$", "", caption, flags=re.I)


def _style(caption: str, z: str) -> str | None:
    z = _np(z)
    if not _core(z):
        return None
    medium = _medium(z)
    if medium:
        return _set_medium(caption, medium)
    return f"{_strip_style(caption)}, in the style of {z}"


def _style_suffix(caption: str, z: str) -> str | None:
    z = _np(z)
    if not _core(z):
        return None
    medium = _medium(z)
    if medium:
        return _set_medium(caption, medium)
    return f"{_strip_style(caption)}, in {z} style"


def _apply_to_whole(caption: str, z: str, strict: bool) -> str | None:
    """Apply "make it Z": a condition, a medium, else an edit of the caption's main subject."""
    z = _np(z)
    if not _core(z):
        return None
    cond = _condition(z)
    if cond:
        return _set_condition(caption, cond)
    medium = _medium(z)
    if medium:
        return _set_medium(caption, medium)
    attr = _attribute(z)
    if attr:
        return _set_attribute(caption, "it", attr, strict)
    z_det, _ = _split_det(z)
    span = _main_subject(caption)
    if z.lower() in _VAGUE:
        return None
    if z_det is None and re.fullmatch(r"[A-Za-z-]+", z):
        if span is None:
            return f"{caption}, {z.lower()}"
        return _set_attribute(caption, "it", ("general", z.lower()), strict)
    if span is None:
        return _append_with(caption, _with_article(z))
    return _replace_span(caption, span, _with_article(z))


# Instruction parsing --------------------------------------------------------------------------


def _clean(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    if text.upper() == text:
        text = text.lower()
    text = " ".join(text.split())
    previous = None
    while text != previous:
        previous = text
        text = text.strip(" \"'“”`.!?;:,")
        text = _POLITE_PREFIX.sub("", text)
        text = _POLITE_SUFFIX.sub("", text)
    return _IMAGE_NOUNS.sub("it", text)


Rule = Callable[[str, re.Match[str], bool], "str | None"]


def _rule_add(caption: str, m: re.Match[str], strict: bool) -> str | None:
    rest = m.group("rest")
    bg = re.fullmatch(r"(?P<obj>.+?)\s+(?:in|to|into|as)\s+(?:the\s+)?(?:background|backdrop)", rest, re.I)
    if bg:
        obj = _with_article(_np(bg.group("obj")))
        return f"{_strip_background(caption)} with {obj} in the background"
    move = re.fullmatch(rf"(?P<obj>.+?)\s+(?:{_PREPS})\s+(?P<loc>.+)", rest, re.I)
    if move:
        obj = _np(move.group("obj"))
        det, core = _split_det(obj)
        moving = core.lower() in _PRONOUNS or (det in _DEFINITE and _find(caption, obj) is not None)
        if moving and _find(caption, move.group("loc")) is None:
            return _background(caption, move.group("loc"))
    split = _LOCATION_START.search(rest)
    if split is None:
        obj = _np(rest)
        return _append_with(caption, _with_article(obj)) if _core(obj) else None
    obj, prep, loc = _np(rest[: split.start()]), split.group(1).lower(), _np(rest[split.end() :])
    if not _core(obj) or not _core(loc):
        return None
    obj = _with_article(obj)
    span = _find(caption, loc)
    if span is not None:
        return _insert_with(caption, span.end, obj)
    if strict:
        raise _not_found(caption, loc)
    prep = {"to": "on", "onto": "on", "into": "in"}.get(prep, prep)
    return f"{caption} with {obj} {prep} {loc}"


def _rule_colour_verb(caption: str, m: re.Match[str], strict: bool) -> str | None:
    words = m.group("rest").split()
    for k in (3, 2, 1):
        if len(words) <= k:
            continue
        attr = _attribute(re.sub(r"^in\s+", "", " ".join(words[-k:])))
        x = re.sub(r"\s+in$", "", " ".join(words[:-k]))
        if attr:
            if _core(_np(x)).lower() in ("background", "backdrop"):
                return _background(caption, attr[1])
            return _set_attribute(caption, x, attr, strict)
    return None


def _rule_make(caption: str, m: re.Match[str], strict: bool) -> str | None:
    rest = re.sub(r"\s+(?:look|looks|appear|seem|become)\s+(?=\S+$)", " ", m.group("rest"))
    repl = re.fullmatch(r"(?P<x>.+?)\s+(?:into\s+)?(?P<y>(?:a|an|some)\s+.+)", rest, re.I)
    if repl and repl.group("x").split()[0].lower() in (DETERMINERS | _PRONOUNS):
        return _replace(caption, repl.group("x"), repl.group("y"), strict)
    words = rest.split()
    colour = _rule_colour_verb(caption, re.match(r"(?P<rest>.*)", rest), strict)
    if colour is not None:
        return colour
    if len(words) < 2:
        return None
    x, last = " ".join(words[:-1]), words[-1].lower()
    if _core(_np(x)).lower() in _PRONOUNS:
        return _apply_to_whole(caption, last, strict)
    if last in _ACTIONS or last in _ACTIONS.values():
        return _set_action(caption, x, _ACTIONS.get(last, last), None, strict)
    known = last in _KNOWN_GENERAL or _find(caption, x) is not None
    if known and re.fullmatch(r"[a-z-]+", last) and last not in _VAGUE | _STOP | DETERMINERS:
        return _set_attribute(caption, x, ("general", last), strict)
    return None


def _rule_transitive(caption: str, m: re.Match[str], strict: bool) -> str | None:
    participle = _TRANSITIVE[m.group("verb").lower()]
    return _set_action(caption, m.group("x"), participle, m.group("obj"), strict)


def _rule_action(caption: str, m: re.Match[str], strict: bool) -> str | None:
    verb = m.group("verb").lower()
    return _set_action(caption, m.group("x"), _ACTIONS.get(verb, verb), None, strict)


def _rule_bare(caption: str, m: re.Match[str], strict: bool) -> str | None:
    z = m.group("z")
    cond = _condition(z)
    if cond:
        return _set_condition(caption, cond)
    medium = _medium(z)
    return _set_medium(caption, medium) if medium else None


def _rule_substitute(caption: str, m: re.Match[str], strict: bool) -> str | None:
    if m.group("verb").lower() == "substitute" and m.group("conj").lower() == "for":
        return _replace(caption, m.group("y"), m.group("x"), strict)
    return _replace(caption, m.group("x"), m.group("y"), strict)


def _g(name: str, fn: Callable[..., str | None]) -> Rule:
    """A rule calling fn(caption, *named groups, strict)."""
    names = tuple(name.split(","))
    return lambda caption, m, strict: fn(caption, *(m.group(n) for n in names), strict)


_VERB_CHANGE = r"change|turn|transform|convert|morph|alter|modify|edit|update|make"
_RULES: tuple[tuple[re.Pattern[str], Rule], ...] = tuple(
    (re.compile(pattern, re.I), rule)
    for pattern, rule in (
        # Background.
        (
            r"(?:change|turn|replace|swap|switch|make|set|convert|transform|alter|update)\s+"
            r"(?:the\s+|its\s+)?(?:background|backdrop|bg|setting|scenery)\s+"
            r"(?:(?:to|into|with|for|by|as|to be)\s+)?(?P<y>.+)",
            _g("y", lambda c, y, s: _background(c, y)),
        ),
        (
            rf"(?:put|place|set|move|bring|transport|take|send|relocate)\s+{_PRON}\s+"
            r"(?:on|in|at|into|onto|to|inside|under|near|by)\s+(?P<y>.+)",
            _g("y", lambda c, y, s: _background(c, y)),
        ),
        (
            r"(?:remove|delete|erase|get rid of|take away|take out|cut out|clear)\s+(?:the\s+)?"
            r"(?:background|backdrop|bg)",
            lambda c, m, s: _plain_background(c),
        ),
        (
            r"(?:blur|defocus)\s+(?:the\s+)?(?:background|backdrop|bg)",
            lambda c, m, s: f"{_strip_background(c)} with a blurred background",
        ),
        # Style.
        (
            r"(?:.*?\s)?(?:in|into|with)\s+(?:the\s+)?(?:art\s+)?style\s+of\s+(?P<z>.+)",
            _g("z", lambda c, z, s: _style(c, z)),
        ),
        (
            r"(?:.*?\s)?(?:like|as if|as though)\s+(?:it\s+)?(?:was|were|is|had been)\s+"
            r"(?:painted|drawn|made|done|created|photographed)\s+by\s+(?P<z>.+)",
            _g("z", lambda c, z, s: _style(c, z)),
        ),
        (
            rf"(?:(?:make|turn|render|convert|change|redraw|paint|draw|restyle|do|transform)\s+"
            rf"{_PRON}\s+(?:into\s+|in\s+|to\s+|look\s+)?)?(?:in\s+)?(?:an?\s+)?(?P<z>.+?)[\s-]style",
            _g("z", lambda c, z, s: _style_suffix(c, z)),
        ),
        # Give / wear / hold / actions.
        (
            r"give\s+(?P<x>(?:the|his|her|its|their|this|that|it|him|them)\b.*?)\s+"
            r"(?P<obj>(?:a|an|some|two|three)\s+.+|\w+)",
            _g("x,obj", _attach),
        ),
        (
            rf"(?:make|have|let|get)\s+(?P<x>.+?)\s+(?:to\s+)?(?P<verb>{'|'.join(_TRANSITIVE)})s?"
            r"\s+(?P<obj>.+)",
            _rule_transitive,
        ),
        (
            r"dress\s+(?P<x>.+?)\s+in\s+(?P<obj>.+)",
            lambda c, m, s: _set_action(c, m.group("x"), "wearing", m.group("obj"), s),
        ),
        (
            rf"(?:make|have|let|get)\s+(?P<x>.+?)\s+(?:to\s+)?(?P<verb>{'|'.join(_ACTIONS)})",
            _rule_action,
        ),
        # Remove.
        (
            r"(?:take|get)\s+(?P<x>.+?)\s+(?:away|out|off)(?:\s+(?:from|of)\s+.+)?",
            _g("x", _remove),
        ),
        (
            r"(?:remove|delete|erase|eliminate|clear|hide|drop|cut out|cut|take away|take out|"
            r"take off|get rid of|rid it of|wipe out|wipe away|clear away|clean up|lose)\s+"
            r"(?P<x>.+?)(?:\s+(?:from|off|out of)\s+.+)?",
            _g("x", _remove),
        ),
        (
            r"(?:without|no|there should be no|there is no|there are no|with no)\s+(?P<x>.+)",
            _g("x", _remove),
        ),
        # Exchange two things in place.
        (
            r"(?:swap|switch|exchange|interchange)\s+(?:the\s+(?:places|positions)\s+of\s+)?"
            r"(?P<a>.+?)\s+and\s+(?P<b>.+)",
            _g("a,b", _exchange),
        ),
        # Colour and material.
        (
            r"(?:change|set|turn|make|switch|alter)\s+(?:the\s+)?(?:colou?r|paint|shade|hue)\s+of\s+"
            r"(?P<x>.+?)\s+(?:to|into|as|to be)\s+(?P<a>.+)",
            lambda c, m, s: _rule_colour_verb(c, re.match(r"(?P<rest>.*)", f"{m.group('x')} {m.group('a')}"), s),
        ),
        (
            r"(?:change|set|turn|make|switch|alter)\s+(?P<x>.+?)(?:'s|s')?\s+colou?r\s+"
            r"(?:to|into|as|to be)\s+(?P<a>.+)",
            lambda c, m, s: _rule_colour_verb(c, re.match(r"(?P<rest>.*)", f"{m.group('x')} {m.group('a')}"), s),
        ),
        (
            r"(?:paint|colou?r|recolou?r|dye|tint|spray paint|repaint|turn)\s+(?P<rest>.+)",
            _rule_colour_verb,
        ),
        # Replace.
        (
            r"(?P<verb>replace|substitute|exchange)\s+(?P<x>.+?)\s+(?P<conj>with|by|using|for)\s+(?P<y>.+)",
            _rule_substitute,
        ),
        (
            r"(?:swap|switch|trade)\s+(?:out\s+)?(?P<x>.+?)\s+(?:for|with|to|into)\s+(?P<y>.+)",
            _g("x,y", _replace),
        ),
        (
            rf"(?:{_VERB_CHANGE})\s+{_PRON}\s+(?:(?:look|looks|appear)\s+(?:like\s+)?|"
            r"(?:into|in to|to|as|in|like|become)\s+)?(?P<z>.+)",
            _g("z", _apply_to_whole),
        ),
        (
            rf"(?:{_VERB_CHANGE})\s+(?P<x>.+?)\s+(?:into|in to|to be|to|so (?:that )?it is|"
            r"so it becomes|become|becomes|look like|looks like|resemble|like|as)\s+(?P<y>.+)",
            _g("x,y", _replace),
        ),
        (r"make\s+(?P<rest>.+)", _rule_make),
        (
            r"(?P<x>.+?)\s*(?:->|→|=>|\bshould be\b|\bshould become\b|\bbecomes\b|\bis now\b|"
            r"\bare now\b)\s*(?P<y>.+)",
            _g("x,y", _replace),
        ),
        (
            r"(?:use|show|put|have|add|draw)?\s*(?P<y>.+?)\s+instead\s+of\s+(?P<x>.+)",
            _g("x,y", _replace),
        ),
        # Add.
        (
            r"(?:add|put|place|insert|include|draw|paint|attach|stick|throw in|introduce|"
            r"there should be|there must be|there needs to be|let there be)\s+(?P<rest>.+)",
            _rule_add,
        ),
        # A bare condition or medium: "winter", "at night", "watercolor".
        (r"(?:(?:at|in|during|on|as|into|like)\s+)?(?P<z>.+)", _rule_bare),
    )
)


def _apply_step(caption: str, step: str, strict: bool, instruction: str) -> str:
    for pattern, rule in _RULES:
        m = pattern.fullmatch(step)
        if m:
            result = rule(caption, m, strict)
            if result is not None:
                return _tidy(result)
    where = f" (at {step!r})" if step != instruction else ""
    raise DescribeError(
        "unparsed",
        f"cannot parse the instruction {instruction!r}{where}; known forms include "
        "'replace X with Y', "
        "'turn X into Y', 'add X', 'remove X', 'make X red', 'change the background to Y', "
        "'make it winter', 'make it look like a painting'",
    )


def _seed_for(caption: str, salt: int) -> int:
    digest = hashlib.sha256(f"{salt}\x1f{caption}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _weighted_order(rng: random.Random, weights: tuple[tuple[str, int], ...]) -> list[str]:
    pool = list(weights)
    order = []
    while pool:
        kind = rng.choices([k for k, _ in pool], weights=[w for _, w in pool])[0]
        order.append(kind)
        pool = [(k, w) for k, w in pool if k != kind]
    return order


MAX_INSTRUCTION_CHARS = 300  # the default for longer instructions rejected as "too_long"


class RulesDescriber(Describer):
    """Deterministic, offline rewriter and instruction writer (no captioning).

    strict: raise DescribeError("not_found") when an instruction names an object the caption does
        not mention, instead of appending a phrase for it.
    seed: salt for write_instructions; the same (seed, caption) always gives the same Edit.
    min_words, max_words, max_chars: caption lengths write_instructions accepts.
    max_instruction_chars: longer instructions are rejected as "too_long".
    """

    name = "rules"
    roles = frozenset(("rewrite", "write_instructions"))

    def __init__(
        self,
        strict: bool = False,
        seed: int = 0,
        min_words: int = 2,
        max_words: int = 50,
        max_chars: int = 300,
        max_instruction_chars: int = MAX_INSTRUCTION_CHARS,
    ) -> None:
        self.strict = strict
        self.seed = seed
        self.min_words = min_words
        self.max_words = max_words
        self.max_chars = max_chars
        self.max_instruction_chars = max_instruction_chars

    def __repr__(self) -> str:
        return f"RulesDescriber(strict={self.strict}, seed={self.seed})"

    # Rewriting --------------------------------------------------------------------------------

    def _rewrite_one(self, source_caption: object, instruction: object) -> str:
        caption = check_text(source_caption, "source caption")
        text = check_text(instruction, "instruction")
        if len(text) > self.max_instruction_chars:
            raise DescribeError(
                "too_long",
                f"instruction has {len(text)} characters (max {self.max_instruction_chars})",
            )
        cleaned = _clean(text)
        if not any(ch.isalpha() for ch in cleaned):
            raise DescribeError("unparsed", f"instruction {text!r} has no edit in it")
        body = caption.rstrip(" .!")
        ending = caption[len(body) :].strip()
        result = body
        for step in _STEP_SPLIT.split(cleaned):
            result = _apply_step(result, _clean(step), self.strict, text)
        if not result:
            result = "an empty scene"
        if body[:1].isupper() and result[:1].islower():
            result = result[0].upper() + result[1:]
        if result.lower() == body.lower():
            raise DescribeError("no_change", f"instruction {text!r} does not change the caption {caption!r}")
        return result + ending

    # Instruction writing ----------------------------------------------------------------------

    def _check_caption(self, value: object) -> str:
        caption = check_text(value, "caption")
        words = caption.split()
        if len(caption) > self.max_chars or len(words) > self.max_words:
            raise DescribeError(
                "too_long",
                f"caption has {len(words)} words and {len(caption)} characters "
                f"(max {self.max_words} words, {self.max_chars} characters)",
            )
        wordlike = [w for w in words if re.fullmatch(r"[A-Za-z][A-Za-z'-]*[,.!?;:]?", w)]
        if re.search(r"https?:|www\.|\.(?:jpe?g|png|gif|webp)\b", caption, re.I) or (len(wordlike) < 0.6 * len(words)):
            raise DescribeError("garbled", f"caption {caption!r} is mostly not words")
        if len(wordlike) < self.min_words:
            raise DescribeError("too_short", f"caption {caption!r} has fewer than {self.min_words} words")
        return caption

    def _write_one(self, caption: object) -> Edit:
        text = self._check_caption(caption)
        rng = random.Random(_seed_for(text, self.seed))
        nouns = self._nouns(text)
        for kind in _weighted_order(rng, _KIND_WEIGHTS):
            for instruction in self._candidates(kind, nouns, rng):
                try:
                    target = self._rewrite_one(text, instruction)
                except DescribeError:
                    continue
                return Edit(instruction, target, kind)
        raise DescribeError("no_edit", f"no edit could be written for caption {text!r}")

    @staticmethod
    def _nouns(caption: str) -> list[tuple[str, str]]:
        """(surface word, group) for every vocabulary noun in the caption, in order."""
        found = []
        for tok in _TOKEN.finditer(caption):
            word = tok.group(0)
            group = _NOUN_GROUP.get(_singularize(word.lower())) or _NOUN_GROUP.get(word.lower())
            if _is_modifier(caption, tok.end()):
                continue
            if group and (word.lower(), group) not in found:
                found.append((word.lower(), group))
        return found

    @staticmethod
    def _candidates(kind: str, nouns: list[tuple[str, str]], rng: random.Random) -> list[str]:
        if kind == "replace" and nouns:
            word, group = rng.choice(nouns)
            single = _singularize(word) if _is_plural(word) else word
            others = [n for n in _GROUPS[group] if n != single]
            new = rng.choice(others)
            new = _pluralize(new) if _is_plural(word) else _with_article(new)
            template = rng.choice(
                (
                    "replace the {x} with {y}",
                    "turn the {x} into {y}",
                    "change the {x} to {y}",
                    "make the {x} {y}",
                    "swap the {x} for {y}",
                    "transform the {x} into {y}",
                )
            )
            if template.startswith("make") and _is_plural(word):
                template = "turn the {x} into {y}"
            return [template.format(x=word, y=new)]
        if kind == "colour":
            usable = [(w, g) for w, g in nouns if g in _COLOURABLE]
            if not usable:
                return []
            word, _ = rng.choice(usable)
            colours = list(_EDIT_COLOURS)
            rng.shuffle(colours)
            template = rng.choice(
                ("make the {x} {c}", "change the color of the {x} to {c}", "paint the {x} {c}", "turn the {x} {c}")
            )
            return [template.format(x=word, c=c) for c in colours[:3]]
        if kind == "remove" and len(nouns) >= 2:
            word, _ = rng.choice(nouns[1:])
            verb = rng.choice(("remove", "delete", "get rid of", "take away", "erase"))
            return [f"{verb} the {word}"]
        if kind == "add":
            wearers = [w for w, g in nouns if g in _WEARERS and not _is_plural(w)]
            if wearers and rng.random() < 0.5:
                return [f"put {rng.choice(_WEARABLES)} on the {rng.choice(wearers)}"]
            obj = rng.choice(_ADD_OBJECTS)
            if nouns and rng.random() < 0.3:
                return [f"place {obj} next to the {rng.choice(nouns)[0]}"]
            return [f"{rng.choice(('add', 'insert', 'add'))} {obj}"]
        if kind == "style":
            return [rng.choice(_STYLE_EDITS)]
        if kind == "condition":
            edits = list(_CONDITION_EDITS)
            rng.shuffle(edits)
            return edits[:2]
        if kind == "background":
            template = rng.choice(("change the background to {b}", "replace the background with {b}", "move it to {b}"))
            return [template.format(b=rng.choice(_BACKGROUNDS))]
        return []
