"""`python -m vidrefine` runs the command line."""

from vidrefine.cli import main

if __name__ == "__main__":
    main()
