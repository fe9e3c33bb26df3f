"""Which checkpoints a picture may ask for: those a live worker's Forge
has (`WorkerState.checkpoints`, read by each worker from Forge)."""

from .registry import live_workers


def choosable() -> list[str]:
    """Model names offered by at least one live worker, sorted."""
    names = {
        entry["model_name"]
        for worker in live_workers()
        for entry in worker.checkpoints
        if isinstance(entry, dict) and entry.get("model_name")
    }
    return sorted(names)


def resolve(asked: str) -> str | None:
    """The model name `asked` stands for (its model name, title, file name
    without folder and extension, or short hash, as Forge accepts them)
    among the choosable ones; None if no live worker offers it."""
    asked = asked.strip()
    if not asked:
        return None
    for worker in live_workers():
        for entry in worker.checkpoints:
            if isinstance(entry, dict) and asked in {
                entry.get("model_name"),
                entry.get("title"),
                entry.get("hash"),
                _stem(str(entry.get("title") or "")),
            }:
                return str(entry["model_name"])
    return None


def _stem(title: str) -> str:
    """ "anime/x.safetensors [0123456789]" -> "x"."""
    path = title.split(" [", 1)[0]
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
