"""The Function App: wiring only. Each concern is a blueprint; the logic lives in ``sendmail``.

Importing this module must stay cheap (cold starts): the blueprints import their domain modules
and heavy clients (boto3, Azure Tables) lazily, inside the functions.
"""

import azure.durable_functions as df
import azure.functions as func

from activities.send import bp as activities
from api.docs import bp as docs
from api.emails import bp as emails
from api.events import bp as events
from api.health import bp as health
from api.suppressions import bp as suppressions
from orchestrators.send import bp as orchestrators
from sendmail.platform.logs import quiet_sdk_loggers

# The SDKs' HTTP logging would put recipient addresses into Application Insights.
quiet_sdk_loggers()

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(emails)
app.register_functions(events)
app.register_functions(suppressions)
app.register_functions(health)
app.register_functions(docs)
app.register_functions(orchestrators)
app.register_functions(activities)
