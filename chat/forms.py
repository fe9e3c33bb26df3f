from django import forms
from django.utils.translation import gettext_lazy as _

from imagejobs import checkpoints
from imagejobs.models import PROMPT_MAX_LENGTH

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

    # The checkpoint picked in the composer ("": the default).
    model = forms.CharField(required=False, max_length=255)

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

    def clean(self) -> dict[str, object]:
        cleaned = super().clean()
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
        if request is not None:
            asked = request.model or cleaned.get("model") or ""
            cleaned["model"] = self._checked_model(asked) if asked else ""
        cleaned["image_request"] = request
        return cleaned

    @staticmethod
    def _checked_model(asked: str) -> str:
        found = checkpoints.resolve(asked)
        if found is not None:
            return found
        offered = checkpoints.choosable()
        if not offered:
            raise forms.ValidationError(
                _("No image worker offers a model to choose right now: leave the model out."),
                code="no_models",
            )
        raise forms.ValidationError(
            _("There is no model “%(model)s”. Choose one of: %(models)s."),
            code="unknown_model",
            params={"model": asked, "models": ", ".join(offered)},
        )

    @property
    def chosen_model(self) -> str:
        """The checkpoint asked for, checked; "" for the default."""
        return self.cleaned_data.get("model") or ""

    @property
    def image_request(self) -> ImageRequest | None:
        return self.cleaned_data.get("image_request")
