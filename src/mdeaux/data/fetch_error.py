"""The error of the fetch stage, shared by the downloader, the extractor and ``fetch_dataset``."""

from __future__ import annotations


class FetchError(RuntimeError):
    """A source could not be fetched, verified or extracted."""
