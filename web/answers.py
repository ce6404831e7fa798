"""Replayed answers of /api/cameras: the app's own answer to a request, kept with the shared figures
(web.figures) it was made from and given again, without running Flask, to every identical request
until the figures are refreshed.

Every open dashboard polls /api/cameras every 2 s with the same query (the cameras in view), so
between two refreshes most requests ask what was asked already. Making that answer again (Flask's
request context, routing, the token check, the filter over every camera, the JSON join, the security
headers) cost about as much again as the web server's own part of a request, which made 20
dashboards cost 1.46-1.52 x one at 256 cameras (bench.many_cameras_web); a replay costs a dictionary
lookup.

An answer is the same for the same figures, query string and Authorization header (the only inputs of
the route and of the token check), so that is its key. Only 200 answers are kept, only of the newest
figures, and at most MAX_ANSWERS of them (MAX_BYTES in all): a refresh makes new figures, so the next
request after it is answered by the app from them. With `web.figures_interval` 0 (every request
computes) nothing is replayed. Runs on the request's thread/greenlet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from web.figures import Figures, SharedFigures

PATH = "/api/cameras"
FIGURES_KEY = "framecast.figures"  # the environ key where the route leaves the figures it answered from
MAX_ANSWERS = 32
MAX_BYTES = 8 * 1024 * 1024

Answer = tuple[str, list[tuple[str, str]], bytes]  # status, headers, body


class ReplayedAnswers:
    """WSGI middleware in front of the Flask app (see the module docstring)."""

    def __init__(self, app: Callable, figures: SharedFigures):
        self.app, self.figures = app, figures
        # The figures the kept answers were made from, and the answers: one tuple, replaced whole, so a
        # caller on another thread never pairs new figures with the answers of older ones.
        self._kept: tuple[Figures | None, dict[tuple[str, str], Answer]] = (None, {})
        self._bytes = 0
        self.replays = 0  # answers given again so far (the tests count them)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        key = (environ.get("QUERY_STRING", ""), environ.get("HTTP_AUTHORIZATION", ""))
        figures = self.figures.fresh()
        of, answers = self._kept
        if figures is not None and figures is of:
            answer = answers.get(key)
            if answer is not None:
                self.replays += 1
                status, headers, body = answer
                start_response(status, list(headers))
                return [body]
        return self._answer(environ, start_response, key)

    def _answer(self, environ: dict, start_response: Callable, key: tuple[str, str]) -> Iterable[bytes]:
        """The app answers; a 200 made from the newest figures is kept for the next identical request."""
        given: list = []

        def capture(status, headers, exc_info=None):
            given[:] = [status, list(headers)]
            return start_response(status, headers, exc_info)

        result = self.app(environ, capture)
        figures = environ.get(FIGURES_KEY)
        if not given or not given[0].startswith("200 ") or figures is None or figures is not self.figures.latest():
            return result
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        self._keep(figures, key, (given[0], given[1], body))
        return [body]

    def _keep(self, figures: Figures, key: tuple[str, str], answer: Answer) -> None:
        of, answers = self._kept
        if figures is not of:
            answers, self._bytes = {}, 0
            self._kept = (figures, answers)
        size = len(answer[2])
        if key in answers or len(answers) >= MAX_ANSWERS or self._bytes + size > MAX_BYTES:
            return
        answers[key] = answer
        self._bytes += size
