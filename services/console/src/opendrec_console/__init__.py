"""OpenDREC web console."""
