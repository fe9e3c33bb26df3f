"""Which checkpoints a picture may ask for: those a live worker's Forge
has (`WorkerState.checkpoints`, read by each worker from Forge)."""

from .registry import live_workers

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
