"""``python -m distill``: the same as the ``distill`` console script (``distill._entry.main``)."""

from distill._entry import main

if __name__ == "__main__":
    main()
