"""``mlc ui``: a read-only web page of an mlc home.

It shows what ``mlc status``, ``mlc history`` and ``mlc diff`` show (and each version's report), read through the same
:mod:`lifecycle.api` functions, and keeps an open page live by polling their JSON:

- :mod:`lifecycle.ui.app` — the HTTP server (standard library), routes, security headers;
- :mod:`lifecycle.ui.markup` — escaping, URLs, the page frame, badges, times and links;
- :mod:`lifecycle.ui.pages` — the overview, model, diff and error pages;
- :mod:`lifecycle.ui.reports` — the page of one version and the history page with filters;
- :mod:`lifecycle.ui.records` — the version's whole report and the servers' REST addresses;
- :mod:`lifecycle.ui.chart` — the metric over versions and IoU per class as server-drawn SVG;
- :mod:`lifecycle.ui.pictures` — masks, overlays and diffs, computed lazily, cached in ``.mlc/ui/``;
- :mod:`lifecycle.ui.redact` — credentials never reach the page;
- ``static/`` — the page's own small script and stylesheet (nothing from a CDN).

Importing this package does not import TensorFlow; the first picture does.
"""

from lifecycle.ui.app import UiServer, create_server

__all__ = ["UiServer", "create_server"]
