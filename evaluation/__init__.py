"""Evaluation of ConsiStory against vanilla SDXL: prompt alignment and subject consistency."""
