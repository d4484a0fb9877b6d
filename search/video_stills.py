"""One still of a video at a moment, for posters: seek to the keyframe before it, decode up to it."""

from __future__ import annotations

from typing import BinaryIO

from .errors import MediaFileError


def frame_at(handle: BinaryIO, seconds: float, max_seconds: float):
    """The RGB Pillow image of the first frame shown at or after `seconds` (the last one, past the end).

    Decodes at most `max_seconds` of video after the seek point, so a file without keyframes
    cannot make one request decode it all.
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
            stream.thread_type = "AUTO"
            if seconds > 0 and stream.time_base:
                # Backward: to the keyframe at or before the moment, then decode forward to it.
                container.seek(int(seconds / stream.time_base), stream=stream, backward=True, any_frame=False)
            last, started = None, None
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                time_s = float(frame.pts * stream.time_base)
                started = time_s if started is None else started
                last = frame
                if time_s + 1e-3 >= seconds or time_s - started > max_seconds:
                    break
            if last is None:
                raise MediaFileError("no frame of the video could be decoded")
            return last.to_image()
    except MediaFileError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaFileError(f"the video could not be decoded: {type(exc).__name__}") from None
