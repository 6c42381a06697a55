"""The mlc home: paths, model definitions, registry, history, journal, locks and atomic files."""
