"""The vectors: flat segment files, the segmented store, approximate indexes and their choice, id spaces."""
