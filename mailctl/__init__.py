"""mailctl: send mail from a list through the Send-Mail service, and watch it go.

``python -m mailctl send|user-send|status|watch|pause|resume|cancel ...`` — see
``python -m mailctl --help`` and the README's "Sending from a list". The client is a separate
package with its own dependencies (``mailctl/requirements.txt``); the Function App never imports
it and ``.funcignore`` keeps it out of the deployment. It talks to the service only through the
public HTTP API.

Modules, one job each: :mod:`mailctl.recipients` (reading and checking a list),
:mod:`mailctl.client` (the HTTP API: requests, the error envelope, the Idempotency-Key),
:mod:`mailctl.watching` (following a send with a progress display), :mod:`mailctl.report` (the
per-recipient CSV), :mod:`mailctl.config` (URL and key), :mod:`mailctl.exitcodes`,
:mod:`mailctl.cli` (the commands).
"""

__version__ = "1.0.0"
