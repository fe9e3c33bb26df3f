"""The simulator's checkpoints: names, hashes and every alias Forge accepts
for one (docs/forge-api.md, "Checkpoint selection")."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Checkpoint:
    stem: str  # the file name without its extension
    short_hash: str  # the first 10 hex digits of the sha256, as Forge shows them
    folder: str = ""  # a subfolder of models/Stable-diffusion, if any

    @property
    def path(self) -> str:
        name = f"{self.stem}.safetensors"
        return f"{self.folder}/{name}" if self.folder else name

    @property
    def title(self) -> str:
        return f"{self.path} [{self.short_hash}]"

    @property
    def model_name(self) -> str:
        # Forge: the path without its extension, folders joined by "_".
        return self.path.rsplit(".", 1)[0].replace("/", "_")

    @property
    def sha256(self) -> str:
        return self.short_hash + "0" * 54

    def aliases(self) -> set[str]:
        return {self.title, self.path, self.model_name, self.stem, self.short_hash, self.sha256}

    def listing(self) -> dict[str, object]:
        """As `GET /sdapi/v1/sd-models` lists it."""
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.short_hash,
            "sha256": self.sha256,
            "filename": f"/models/Stable-diffusion/{self.path}",
            "config": None,
        }


DEFAULT_CHECKPOINTS = (
    Checkpoint("mami-sim", "5ea7f00d12"),
    Checkpoint("mami-anime", "a71e3b9c40", folder="anime"),
    Checkpoint("mami-photo", "9f0c2d7e55"),
)


def find(
    checkpoints: tuple[Checkpoint, ...] | list[Checkpoint], alias: object
) -> Checkpoint | None:
    """The checkpoint `alias` names, or None (Forge then silently keeps the
    one it has)."""
    if not isinstance(alias, str):
        return None
    return next((c for c in checkpoints if alias in c.aliases()), None)
