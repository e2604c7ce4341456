"""The Function App: wiring only. Each concern is a blueprint; the logic lives in ``sendmail``.

Importing this module must stay cheap (cold starts): the blueprints import their domain modules
and heavy clients (boto3, Azure Tables) lazily, inside the functions.

``SENDMAIL_FUNCTIONS`` (read here, at import) says what the app registers:

- ``all`` (the default): everything.
- ``public``: only the routes that must answer anyone — unsubscribe (mail clients), the SNS
  events endpoint (SNS has no address range to allow) and health. The Bicep deploys the same
  package a second time with this value, as a small app without an IP restriction, when the
  caller allow-list (``allowedIpRanges``) is on: App Service access restrictions are per app, not
  per path (docs/deploy.md, "What stays public"). No orchestrator, activity or entity is
  registered there, so the Durable extension (loaded by the bundle all the same) never starts a
  task-hub worker and cannot take the main app's work items: only an orchestration, activity or
  entity trigger's listener starts it (Azure/azure-functions-durable-extension at f943321,
  src/WebJobs.Extensions.DurableTask/Listener/DurableTaskListener.cs lines 77-80, the only
  caller of ``StartTaskHubWorkerIfNotStartedAsync``, DurableTaskExtension.cs line 1398).

Any other value fails the import, so a mistyped setting is an app that does not start, never
one that serves the wrong routes.
"""

import os

import azure.durable_functions as df
import azure.functions as func

from activities.send import bp as activities
from activities.webhooks import bp as webhooks
from api.account import bp as account
from api.control import bp as control
from api.docs import bp as docs
from api.emails import bp as emails
from api.events import bp as events
from api.health import bp as health
from api.retention import bp as retention
from api.sns import bp as sns
from api.suppressions import bp as suppressions
from api.unsubscribe import bp as unsubscribe
from orchestrators.send import bp as orchestrators
from sendmail.platform.logs import quiet_sdk_loggers

#: The values of SENDMAIL_FUNCTIONS (sendmail.platform.settings.Settings.SENDMAIL_FUNCTIONS).
ALL_FUNCTIONS = "all"
PUBLIC_FUNCTIONS = "public"
FUNCTION_SETS = (ALL_FUNCTIONS, PUBLIC_FUNCTIONS)

functions = os.environ.get("SENDMAIL_FUNCTIONS", ALL_FUNCTIONS)
if functions not in FUNCTION_SETS:
    raise ValueError(f"SENDMAIL_FUNCTIONS must be one of {FUNCTION_SETS}, not {functions!r}")

# The SDKs' HTTP logging would put recipient addresses into Application Insights.
quiet_sdk_loggers()

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
# The public routes: in every app.
app.register_functions(unsubscribe)
app.register_functions(sns)
app.register_functions(health)
if functions == ALL_FUNCTIONS:
    app.register_functions(emails)
    app.register_functions(control)
    app.register_functions(account)
    app.register_functions(events)
    app.register_functions(suppressions)
    app.register_functions(docs)
    app.register_functions(orchestrators)
    app.register_functions(activities)
    app.register_functions(webhooks)
    app.register_functions(retention)
