from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from imagejobs import checkpoints
from imagejobs.bounds import PROMPT_MAX_LENGTH

from . import chat_model
from .intents import EmptyImageCommand, ImageRequest, parse_image_request

MESSAGE_MAX_LENGTH = 4000
# Characters that show nothing: a message of only these is empty.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
# What Django puts where the browser sent bytes that are not UTF-8 (or a
# lone surrogate): refused, never stored as if the user had typed it.
REPLACEMENT_CHARACTER = "\ufffd"


class MessageForm(forms.Form):
    text = forms.CharField(
        max_length=MESSAGE_MAX_LENGTH,
        strip=True,
        error_messages={"required": _("Write a message first.")},
        widget=forms.Textarea(
            attrs={
                "rows": 2,
                "placeholder": _("Ask for a picture: /image a red fox, or “draw a cat”"),
                "autofocus": True,
            }
        ),
    )

    # The checkpoint picked in the composer ("": automatic, see
    # `chat.pictures.choose_model`).
    model = forms.CharField(required=False, max_length=255)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if chat_model.configured():
            # mami talks: say so, and that pictures are still one word away.
            self.fields["text"].widget.attrs["placeholder"] = _(
                "Write to mami, or ask for a picture: /image a red fox"
            )

    def clean_text(self) -> str:
        text = self.cleaned_data["text"]
        if not text.strip(INVISIBLE + " \t\r\n"):
            raise forms.ValidationError(self.fields["text"].error_messages["required"])
        if REPLACEMENT_CHARACTER in text:
            raise forms.ValidationError(
                _(
                    "Your message has characters that could not be read (not valid UTF-8). "
                    "Remove them and send it again."
                ),
                code="invalid_utf8",
            )
        return text

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        text = cleaned.get("text")
        if not text:
            return cleaned
        try:
            request = parse_image_request(text)
        except EmptyImageCommand:
            raise forms.ValidationError(
                _("Write what to draw after /image, for example: /image a red fox"),
                code="empty_prompt",
            ) from None
        if request is not None and len(request.prompt) > PROMPT_MAX_LENGTH:
            raise forms.ValidationError(
                _("A picture description can be at most %(max)d characters (it has %(length)d)."),
                code="prompt_too_long",
                params={"max": PROMPT_MAX_LENGTH, "length": len(request.prompt)},
            )
        # A chat model may draw for any message, with the model picked.
        drawing = request is not None or chat_model.configured()
        if drawing:
            asked = (request.model if request is not None else "") or cleaned.get("model") or ""
            if asked:
                cleaned["model"] = self._checked_model(asked)
            elif "model" not in self.data:
                cleaned["model"] = None  # not said at all: the conversation's last choice
        else:
            cleaned["model"] = None
        cleaned["image_request"] = request
        return cleaned

    @staticmethod
    def _checked_model(asked: str) -> str:
        try:
            return checkpoints.check_model(asked)
        except checkpoints.UnknownModel as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from None

    @property
    def chosen_model(self) -> str | None:
        """The checkpoint asked for, checked; "" for automatic; None when the
        request did not say (no picker): see `chat.pictures.choose_model`."""
        return self.cleaned_data.get("model")

    @property
    def image_request(self) -> ImageRequest | None:
        return self.cleaned_data.get("image_request")
