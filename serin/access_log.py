"""gunicorn's access log, as ``SERIN_ACCESS_LOG`` says: by default without the quiet requests.

Every Deployment update that reaches the webhooks costs a review, most of them of Deployments no
Canary targets, answered allowed as they are; a line for each would be most of the log of a
busy cluster, and no one's to read. A handler marks such a request quiet in its WSGI environ
(``serin.logs.QUIET``); the access log leaves it out unless ``SERIN_ACCESS_LOG`` is ``all``, and
shows no request at all when it is ``none``. Denials, changes and every other request are shown.

gunicorn's configuration names this class (``logger_class``).
"""

from __future__ import annotations

import datetime
from typing import Any

from gunicorn.glogging import Logger

from serin import logs


class AccessLog(Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.shown = logs.access_log()

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: datetime.timedelta) -> None:
        # Decided before gunicorn builds the line's fields, which is most of what a line costs.
        if self.shown == "none" or (self.shown == "quiet" and environ.get(logs.QUIET)):
            return
        super().access(resp, req, environ, request_time)
