"""``mlc train``'s demo trainers: runs (the command), deeplab and classifier (the built-in networks' trainers), scenes (their data), record (the run record)."""
