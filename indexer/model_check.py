"""Before a run: is the configured model the live index's? Go on, rebuild beside it, take its vectors over, or stop."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from spyglass.search.catalog.queries import live_generation
from spyglass.search.catalog.schema import EmbeddingModel, MediaItem, MediaRoot
from spyglass.search.display import printable
from spyglass.search.errors import ConfigError, ModelMismatch, SpyglassError
from spyglass.search.media.paths import inside
from spyglass.search.model.encoder import Encoder, encoder_for
from spyglass.search.settings import Settings


@dataclass(frozen=True)
class ModelDecision:
    """What the run does about the model: rebuild every item, or take the live vectors over (text_swap)."""

    rebuild: bool
    text_swap: bool
    roots: list[str]  # a rebuild covers every recorded root


def decide_model(sessions: sessionmaker[Session], settings: Settings, identity: tuple[str, str], roots: list[str],
                 rebuild: bool, rebuild_on_model_change: bool, drop_missing: bool,
                 encoder: Callable[[], Encoder], echo: Callable[[str], None]) -> ModelDecision:
    """One index never mixes two models: a changed model stops the run (index), rebuilds beside the
    live index (reindex, or --rebuild), or — when only the text tower changed — keeps its vectors."""
    with sessions() as session:
        live = live_generation(session)
        if rebuild:
            return ModelDecision(True, False, sorted(set(roots) | set(rebuild_roots(session, drop_missing))))
    if live is None or (live.model.architecture, live.model.pretrained) == identity:
        return ModelDecision(False, False, roots)
    arch, weights = identity
    if same_image_tower(sessions, settings, live.model, encoder):
        echo(f"The model changed from {live.model.describe()} to {arch} ({weights or 'random weights'}), "
             f"but its image tower is the live one's: the new model takes over the "
             f"{live.vector_count:,} vectors of the live index, and no image is embedded again.")
        return ModelDecision(False, True, roots)
    if rebuild_on_model_change:
        echo(f"The model changed from {live.model.describe()} to {arch} "
             f"({weights or 'random weights'}): building a new index beside the live one.")
        with sessions() as session:
            return ModelDecision(True, False, sorted(set(roots) | set(rebuild_roots(session, drop_missing))))
    raise ModelMismatch(
        f"the index was built with {live.model.describe()}, this run asks for "
        f"{arch} ({weights or 'random weights'}); one index never mixes two models",
        "run `spyglass index --rebuild` to re-embed everything with the new model, or "
        "set SPYGLASS_MODEL / SPYGLASS_PRETRAINED back")


def same_image_tower(sessions: sessionmaker[Session], settings: Settings, live_model: EmbeddingModel,
                     encoder: Callable[[], Encoder]) -> bool:
    """Whether the configured model embeds images exactly as the live index's model did.

    True after a text-side fine-tune (`spyglass finetune --lock-image`): the image tower's
    weights are the same, so are its vectors. A model row recorded before checksums were
    kept gets one now, if its weights are at hand.
    """
    recorded = live_model.image_tower
    if recorded is None:
        try:
            old = encoder_for(settings.override(precision="fp32"), live_model.architecture, live_model.pretrained)
        except SpyglassError:
            return False
        recorded = old.image_tower if live_model.pretrained else None  # random weights are never the same twice
        with sessions.begin() as session:
            session.get(EmbeddingModel, live_model.id).image_tower = recorded
    current = encoder()
    return recorded is not None and recorded == current.image_tower and current.dim == live_model.dim


def rebuild_roots(session: Session, drop_missing: bool) -> list[str]:
    """Every recorded root, for a rebuild; refused while one that holds items is missing.

    A rebuild re-embeds every item with the configured model: the items of an unmounted
    folder could not be, and would drop out of the new index.
    """
    roots = []
    for root in session.scalars(select(MediaRoot.path).order_by(MediaRoot.path)):
        if os.path.isdir(root) or drop_missing:
            roots.append(root)
            continue
        held = session.scalar(select(func.count(MediaItem.id)).where(inside(MediaItem.path, root)))
        if held:
            raise ConfigError(
                f"folder {printable(root)} is missing (an unmounted disk?) and holds {held:,} "
                "items; a rebuild re-embeds every item with the new model and cannot re-embed "
                "these, so it would drop them",
                "mount the folder and run again, or run `spyglass reindex --drop-missing` to "
                "drop its items (they come back when the folder does)")
    return roots
