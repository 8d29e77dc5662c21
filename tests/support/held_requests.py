"""Holding one Gradio request in a browser test, to reproduce "a second pick while the first is served".

Why: on a fast machine the first request may finish before the second pick is made, and a test of
"two quick picks" then passes on code that drops the second one. Holding the first ``queue/join``
request until the second pick was made makes the overlap certain.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from playwright.sync_api import Page, Route

JOIN = "**/gradio_api/queue/join*"


@dataclass
class HeldJoin:
    page: Page
    routes: list[Route] = field(default_factory=list)
    released: bool = False

    def handle(self, route: Route) -> None:
        if self.routes:  # only the first request is held
            route.continue_()
        else:
            self.routes.append(route)

    def wait_held(self, attempts: int = 300) -> None:
        """Let Playwright dispatch events until the first request has arrived here (30 s at most)."""
        for _ in range(attempts):
            if self.routes:
                return
            self.page.wait_for_timeout(100)
        raise AssertionError("no queue/join request was sent")

    def release(self) -> None:
        if self.routes and not self.released:
            self.released = True
            self.routes[0].continue_()


@contextmanager
def first_join_held(page: Page) -> Iterator[HeldJoin]:
    """Hold the page's next ``queue/join`` request until ``release()`` (or the end of the block)."""
    held = HeldJoin(page)
    page.route(JOIN, held.handle)
    try:
        yield held
    finally:
        held.release()
        page.unroute(JOIN, held.handle)
