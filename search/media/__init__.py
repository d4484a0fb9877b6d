"""Media files: what may be read, content hashes, image decoding, video frames and stills, thumbnails."""
