"""Measuring and improving the encoder on a user's data: data sets, retrieval and zero-shot metrics, fine-tuning."""
