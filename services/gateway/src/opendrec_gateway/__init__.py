"""OpenDREC gateway: the platform's only public door."""
