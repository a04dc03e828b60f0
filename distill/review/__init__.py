"""A small local web page for a person to review pseudo-labelled clips (``distill pseudo review``).

``make_app`` loads a pseudo-label CSV (and the decisions already made),
``ReviewServer`` serves it on a loopback address (port 0 picks a free one, which
is what the tests use), ``serve_review`` does both and blocks until Ctrl-C.
Every decision is written at once to the review CSV that ``distill.training.pseudo.load_pseudo``
applies. The page is plain HTML/JS/CSS from ``static/``: nothing outside
loopback is loaded.
"""

from __future__ import annotations

from distill.review.server import Response, ReviewApp, ReviewServer, check_loopback, make_app, serve_review, spectrogram_png

__all__ = ["ReviewApp", "ReviewServer", "Response", "check_loopback", "make_app", "serve_review", "spectrogram_png"]
