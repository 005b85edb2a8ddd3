"""OpenDREC charger gateway: polls Kazam for finished charging transactions and submits them as meter reads."""
