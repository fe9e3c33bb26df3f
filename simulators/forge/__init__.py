from .server import ForgeSimulator

__all__ = ["ForgeSimulator"]
