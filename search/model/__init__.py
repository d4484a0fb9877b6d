"""The dual encoder: its protocol, the open_clip implementation, weights, precision and zero-shot labels."""
