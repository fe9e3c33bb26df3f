"""Telling a picture request from other chat messages.

Rules, not a model: `/image <prompt>`, and plain requests in English and
Turkish ("draw a cat", "generate an image of a cat", "kedi çiz", "bir kedi
resmi çiz"). The prompt is the part that says what to draw.
"""

import re
from dataclasses import dataclass

_COMMAND = re.compile(r"^/image(?:\s+(?P<prompt>.*))?$", re.IGNORECASE | re.DOTALL)

_POLITE_EN = re.compile(
    r"^(?:(?:hey|hi|ok|okay)[,!]?\s+)?(?:please\s+)?(?:(?:can|could|would|will)\s+you\s+"
    r"(?:please\s+)?)?(?:i\s+(?:want|would\s+like|need)\s+(?:you\s+to\s+)?)?",
    re.IGNORECASE,
)
_NOUN_EN = r"(?:image|picture|pic|photo|photograph|drawing|illustration|painting|artwork|render)s?"
_ENGLISH = [
    re.compile(r"^(?:draw|paint|sketch|illustrate)\s+(?:me\s+|us\s+)?(?P<prompt>.+)$", re.I | re.S),
    re.compile(
        rf"^(?:generate|create|make|render|produce|give\s+me|show\s+me|send\s+me)\s+"
        rf"(?:me\s+)?(?:an?\s+|the\s+|some\s+)?{_NOUN_EN}\s+(?:of|with|showing)\s+(?P<prompt>.+)$",
        re.I | re.S,
    ),
    re.compile(rf"^(?:an?\s+)?{_NOUN_EN}\s+of\s+(?P<prompt>.+)$", re.I | re.S),
]
_NOUN_TR = r"(?:resm(?:i|ini)|görsel(?:i|ini)|fotoğraf(?:ı|ını)|çizim(?:i|ini)|tablo(?:su|sunu))"
_VERB_TR = (
    r"(?:çiz|çizer\s+misin|çizebilir\s+misin|çizin|oluştur|oluşturur\s+musun|üret|üretir\s+misin|"
    r"yap|yapar\s+mısın|yapabilir\s+misin)"
)
_TURKISH = [
    re.compile(rf"^(?P<prompt>.+?)\s+{_NOUN_TR}\s+{_VERB_TR}(?:\s+lütfen)?$", re.I | re.S),
    re.compile(
        r"^(?:lütfen\s+)?(?P<prompt>.+?)\s+(?:çiz|çizer\s+misin|çizebilir\s+misin|çizin)(?:\s+lütfen)?$",
        re.I | re.S,
    ),
]
_MODEL_OPTION = re.compile(r"--model(?:=|\s+)(?P<model>\S+)\s*")
_LEADING_ARTICLE = re.compile(r"^(?:bir|an?)\s+(?=\S)", re.IGNORECASE)
_TRAILING_MARKS = ".!?…"
_LEADING_POLITE_TR = re.compile(r"^lütfen\s+", re.IGNORECASE)


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    # `/image --model NAME …`: the checkpoint asked for by name, unchecked.
    model: str = ""
    # Recognised in a plain sentence ("draw a cat"), not asked for with
    # `/image` (or the API): a chat model, when there is one, reads such a
    # message itself and writes the prompt in English.
    guessed: bool = False


class EmptyImageCommand(ValueError):
    """`/image` with nothing to draw."""


def parse_image_request(text: str) -> ImageRequest | None:
    """The picture request in `text`, or None for an ordinary message.

    Raises EmptyImageCommand for a bare `/image`.
    """
    text = text.strip()
    command = _COMMAND.match(text)
    if command:
        rest = (command.group("prompt") or "").strip()
        model = ""
        option = _MODEL_OPTION.match(rest)
        if option:
            model, rest = option.group("model"), rest[option.end() :]
        prompt = _trim_end(rest.strip())
        if not prompt:
            raise EmptyImageCommand(text)
        return ImageRequest(prompt=prompt, model=model)

    # One space between words: the patterns below then never have a long
    # run of whitespace to backtrack over, so a crafted message is as quick
    # as any other (linear in its length).
    sentence = _trim_end(" ".join(text.split()))
    english = _POLITE_EN.sub("", sentence, count=1)
    for pattern in _ENGLISH:
        match = pattern.match(english)
        if match:
            return _request(match.group("prompt"))
    turkish = _LEADING_POLITE_TR.sub("", sentence)
    for pattern in _TURKISH:
        match = pattern.match(turkish)
        if match:
            return _request(match.group("prompt"))
    return None


def _trim_end(text: str) -> str:
    """`text` without trailing spaces and sentence marks (a regex `[…]+$`
    would be quadratic on a long run of them)."""
    end = len(text)
    while end and (text[end - 1].isspace() or text[end - 1] in _TRAILING_MARKS):
        end -= 1
    return text[:end]


def _request(prompt: str) -> ImageRequest | None:
    prompt = _trim_end(prompt.strip())
    prompt = re.sub(r"\s+(?:for\s+me|please|lütfen)$", "", prompt, flags=re.IGNORECASE)
    # "a cat" and "bir kedi" ask for the same thing as "cat" / "kedi"; keep
    # the article only when it is all there is.
    stripped = _LEADING_ARTICLE.sub("", prompt)
    prompt = stripped or prompt
    return ImageRequest(prompt=prompt, guessed=True) if prompt else None
