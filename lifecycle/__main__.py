"""``python -m lifecycle`` runs the mlc command line."""

from lifecycle.cli import main

if __name__ == "__main__":
    main()
