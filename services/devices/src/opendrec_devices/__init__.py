"""OpenDREC devices: the registry of generating devices (D-REC device module)."""
