"""The local runner: decode threads, one encoder thread and batches, in this process (see pipeline)."""

from __future__ import annotations

from functools import partial
from typing import Iterable, Iterator

from spyglass.search.media.files import MediaRoots
from spyglass.search.media.images import decode_gate
from spyglass.search.model.encoder import Encoder
from spyglass.search.settings import Settings

from ..decode import VideoDecoding, load_file
from ..pipeline import PipelineEvent, PipelineStats, embed_files
from ..plan import PixelRule
from ..scan import FoundFile
from ..video_vectors import VideoRules


class LocalRunner:
    """Embeds files with the encoder of this process."""

    def __init__(self, settings: Settings, encoder: Encoder, media: MediaRoots):
        self.settings = settings
        self.encoder = encoder
        self.media = media
        self.stats = PipelineStats()

    def events(self, files: Iterable[FoundFile], rule: PixelRule) -> Iterator[PipelineEvent]:
        """Embedded batches, files that kept their vector, and skips, in the files' order."""
        settings, encoder = self.settings, self.encoder
        batch_size = settings.batch_for(encoder.device)
        video = VideoRules.of(settings)
        load = partial(load_file, preprocess=encoder.preprocess, max_pixels=settings.max_image_pixels,
                       draft_size=encoder.image_size, needs_pixels=rule, media=self.media,
                       gate=decode_gate(settings.decode_memory), video=VideoDecoding(video, batch_size))
        return embed_files(files, load, encoder.encode_pixels, batch_size, settings.workers_for(encoder.device),
                           stats=self.stats, video=video, encode_texts=encoder.encode_texts)
