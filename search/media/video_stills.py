"""One still of a video at a moment, for posters: seek to the keyframe before it, decode up to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from spyglass.search.errors import MediaFileError
from spyglass.search.media.images import check_pixels


@dataclass
class Still:
    """A decoded frame, scaled to fit the size asked for, and the time it is shown at."""

    image: object  # an RGB Pillow image
    time_s: float


def frame_at(handle: BinaryIO, seconds: float, max_seconds: float, max_pixels: int, fit: int) -> Still:
    """The first frame shown at or after `seconds` (the last one, past the end), scaled by libswscale
    to fit within fit x fit pixels.

    Decodes at most `max_seconds` of video after the seek point, so a file without keyframes
    cannot make one request decode it all; a stream whose frames are over `max_pixels` is
    refused before a frame is decoded (ImageTooLarge), as a frame that grows past it is.
    """
    try:
        import av
    except ImportError:
        raise MediaFileError("video thumbnails need PyAV", "pip install 'spyglass[video]'") from None
    try:
        with av.open(handle) as container:
            if not container.streams.video:
                raise MediaFileError("the file has no video stream")
            stream = container.streams.video[0]
            check_pixels(stream.codec_context.width, stream.codec_context.height, max_pixels, "video frame")
            stream.thread_type = "AUTO"
            if seconds > 0 and stream.time_base:
                # Backward: to the keyframe at or before the moment, then decode forward to it.
                container.seek(int(seconds / stream.time_base), stream=stream, backward=True, any_frame=False)
            last, last_time, started = None, 0.0, None
            for frame in container.decode(stream):
                check_pixels(frame.width, frame.height, max_pixels, "video frame")
                if frame.pts is None:
                    continue
                time_s = float(frame.pts * stream.time_base)
                started = time_s if started is None else started
                last, last_time = frame, time_s
                if time_s + 1e-3 >= seconds or time_s - started > max_seconds:
                    break
            if last is None:
                raise MediaFileError("no frame of the video could be decoded")
            width, height = _fitted(last.width, last.height, fit)
            return Still(last.to_image(width=width, height=height), last_time)
    except MediaFileError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaFileError(f"the video could not be decoded: {type(exc).__name__}") from None


def _fitted(width: int, height: int, fit: int) -> tuple[int, int]:
    """The size within fit x fit with the frame's shape (never larger than the frame)."""
    scale = min(1.0, fit / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))
