"""What an image, audio or moderation call is billed by, as every layer sees it.

Chat is billed by tokens; these endpoints by units: images made (priced by their quality
and size), seconds of audio heard, characters spoken. A call may report tokens as well
(the GPT image and transcription models do): they are recorded beside the units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from savegate.core.usage import TokenCounts


@dataclass(frozen=True, slots=True)
class MediaUse:
    images: int = 0
    quality: str | None = None  # None or "auto": not known, priced at the dearest
    size: str | None = None
    seconds: float = 0.0
    characters: int = 0
    tokens: TokenCounts = field(default_factory=TokenCounts)
    estimated: bool = False  # a unit count the upstream did not report

    @property
    def unit(self) -> str | None:
        """The unit the call is billed by, for the usage row."""
        if self.images:
            return "image"
        if self.seconds:
            return "second"
        if self.characters:
            return "character"
        return None

    @property
    def units(self) -> float:
        return self.images or self.seconds or self.characters


@dataclass(frozen=True, slots=True)
class MediaAnswer:
    """A whole upstream answer relayed as its own bytes, whatever its type (JSON, text,
    subtitles), with what it is billed by."""

    raw: bytes
    content_type: str
    use: MediaUse
