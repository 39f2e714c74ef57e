"""alchemy-mbrl: Transformers and tree search on symbolic Alchemy (Pinon et al., 2022)."""

__version__ = "0.1.0"
