"""Task files → items. All input validation lives here, so bad input fails before any model is loaded."""

from __future__ import annotations

from dataclasses import dataclass

from metrics.schema import GENERATIVE, MULTIPLE_CHOICE


@dataclass(frozen=True)
class Item:
    """One scored question.

    A multiple-choice item has `choices` (continuation strings, scored exactly as given) and `target`, the index
    or indices of the correct ones. A generative item has `references` instead; each reference is scored
    teacher-forced as a target, and the model may also be asked to generate.
    """

    item_id: str
    context: str
    choices: tuple[str, ...] = ()
    target: tuple[int, ...] = ()
    references: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return GENERATIVE if self.references else MULTIPLE_CHOICE

    @property
    def continuations(self) -> tuple[str, ...]:
        """What gets scored, in order: the choices, or for a generative item its references."""
        return self.references or self.choices

    @property
    def targets(self) -> tuple[int, ...]:
        """Indices into `continuations` that are correct (every reference of a generative item)."""
        return tuple(range(len(self.references))) if self.references else self.target


@dataclass(frozen=True)
class Task:
    name: str
    items: tuple[Item, ...]
    source: str = "<python>"
