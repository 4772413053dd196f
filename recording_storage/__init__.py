"""recording-storage: moves recordings from S3 into DRACOON, encrypted client-side."""

__version__ = "0.1.0"
__all__ = ["__version__"]
