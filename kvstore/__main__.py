"""``python -m kvstore``: the same command line as the ``kvstore`` console script."""

from kvstore.cli import main

if __name__ == "__main__":
    main()
