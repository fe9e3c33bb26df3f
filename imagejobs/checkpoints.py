"""Which checkpoints a picture may ask for: those a live worker's Forge
has (`WorkerState.checkpoints`, read by each worker from Forge)."""

from django.utils.translation import gettext as _

from .workers import live_workers

Offered = list[dict[str, object]]


def offered() -> Offered:
    """Every checkpoint entry of every live worker (one read of the workers;
    pass it to `choosable` and `resolve` to reuse it within a request)."""
    return [
        entry
        for worker in live_workers()
        for entry in worker.checkpoints
        if isinstance(entry, dict) and entry.get("model_name")
    ]


def choosable(entries: Offered | None = None) -> list[str]:
    """Model names offered by at least one live worker, sorted."""
    source = offered() if entries is None else entries
    return sorted({str(entry["model_name"]) for entry in source})


def resolve(asked: str, entries: Offered | None = None) -> str | None:
    """The model name `asked` stands for (its model name, title, file name
    without folder and extension, or short hash, as Forge accepts them)
    among the choosable ones; None if no live worker offers it."""
    asked = asked.strip()
    if not asked:
        return None
    for entry in offered() if entries is None else entries:
        title = str(entry.get("title") or "")
        if asked in {entry.get("model_name"), title, entry.get("hash"), _stem(title)}:
            return str(entry["model_name"])
    return None


def _stem(title: str) -> str:
    """ "anime/x.safetensors [0123456789]" -> "x"."""
    path = title.split(" [", 1)[0]
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


class UnknownModel(ValueError):
    """A checkpoint no live worker offers; the message lists those it can be."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def check_model(asked: str, entries: Offered | None = None) -> str:
    """The model name `asked` stands for; UnknownModel if no live worker
    offers it."""
    source = offered() if entries is None else entries
    found = resolve(asked, source)
    if found is not None:
        return found
    names = choosable(source)
    if not names:
        raise UnknownModel(
            _("No image worker offers a model to choose right now: leave the model out."),
            "no_models",
        )
    raise UnknownModel(
        _("There is no model “%(model)s”. Choose one of: %(models)s.")
        % {"model": asked, "models": ", ".join(names)},
        "unknown_model",
    )
