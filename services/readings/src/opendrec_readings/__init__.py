"""OpenDREC readings: meter reads judged by the D-REC rules, stored and announced as energy intervals."""
