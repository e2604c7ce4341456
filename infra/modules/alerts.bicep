// Alert rules over the service's OpenTelemetry metrics, and the action group they notify.
//
// Where the metrics are: the app exports them with the Azure Monitor OpenTelemetry distro
// (sendmail/platform/telemetry.py, whose docstring is the catalogue of names) to the
// workspace-based Application Insights of monitoring.bicep. A log search rule scoped to the
// component queries its Application Insights tables: each instrument is a row of `customMetrics`
// per export (every 60 s) and attribute set, `name` the instrument's name, the attributes in
// `customDimensions` (strings). The exporter sends counters as DELTAS (azure-monitor-opentelemetry-
// exporter, export/metrics/_exporter.py: Counter → AggregationTemporality.DELTA; a point's value is
// the sum over the interval, its count 1), so `sum(valueSum)` over a window is the count in it,
// added up across instances. The same rows are `AppMetrics` (Name, Sum, Properties) in the
// workspace (learn.microsoft.com/azure/azure-monitor/reference/tables/appmetrics).
//
// Why log search rules and not metric alerts: custom metrics reach the Azure Monitor metrics store
// with their dimensions only when "custom metric dimensions" is switched on for the component
// (a preview that drops dimensions past its limits); the rates below also need arithmetic across
// metrics. A log search rule queries exactly what the workbook shows.
//
// Every rule is stateful (autoMitigate): it notifies once when its condition starts to hold and
// once when it is resolved (the condition false for 2-3 evaluations, learn.microsoft.com/azure/
// azure-monitor/alerts/alerts-create-log-alert-rule), so a burst of failures is one e-mail, not
// one per evaluation. Event rules look back three evaluations (window 15 min, every 5 min): a row
// ingested a few minutes late is still seen. The rules carry no managed identity: a rule without
// one queries with the permissions of whoever last deployed it (the same page), and the deployer
// can read the component it just created.

@description('Azure region of the rules (the component\'s; passed down from main.bicep).')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Application Insights component the rules query (monitoring.bicep).')
param applicationInsightsName string

@description('Prefix of the rule names (alert-<app>-<token>); each rule appends what it watches.')
param namePrefix string

@description('Action group name.')
param actionGroupName string

@description('Action group short name (at most 12 characters: the sender name of its e-mails).')
@maxLength(12)
param actionGroupShortName string

@description('E-mail the action group notifies. Empty: no action group; the rules still fire and are listed under Azure Monitor > Alerts.')
param alertEmail string

@description('Bounce rate (permanent bounces / (deliveries + permanent bounces), a decimal fraction such as 0.04) over the trailing 24 hours at which the bounce-rate rule fires.')
param bounceRate string

@description('Complaint rate (complaints / (deliveries + permanent bounces), a decimal fraction such as 0.0008) over the trailing 24 hours at which the complaint-rate rule fires.')
param complaintRate string

@description('Messages with a known fate (deliveries + permanent bounces) in the 24 hours before the rates are judged.')
@minValue(1)
param minSample int

@description('Percentage of SendEmail calls (sent + throttled) refused for the rate over 15 minutes at which the throttling rule fires.')
@minValue(1)
@maxValue(100)
param throttledPercent int

// Fewer throttled calls than this in 15 minutes is noise whatever their share (the first seconds
// of a send while the pacer learns the rate), so the throttling rule ignores them.
var throttledFloor = 50

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// An action group's location is 'global' (its receivers are not regional).
resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: actionGroupShortName
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroupIds = empty(alertEmail) ? [] : [
  actionGroup.id
]

// ---------------------------------------------------------------------------------------------
// The queries. Counters are summed with sum(valueSum) (deltas: see the top of this file); every
// query returns one row per dimension value when its condition holds, or none.
// ---------------------------------------------------------------------------------------------

// The guard tripped (a rate reached its limit, or SES's enforcement status is PROBATION or worse).
var guardTrippedQuery = '''
customMetrics
| where name == 'sendmail.guard.trips'
| extend reason = tostring(customDimensions.reason)
| summarize trips = sum(valueSum) by reason
| where trips > 0
'''

// The guard's own rates (sendmail/admission/guard.py): the sample is the messages with a known
// fate (deliveries and permanent bounces), the bounces are the permanent ones.
var ratesPrelude = '''
customMetrics
| where name == 'sendmail.sns.events'
| extend eventType = tostring(customDimensions.type), permanent = tostring(customDimensions.permanent)
| summarize delivered = sumif(valueSum, eventType == 'Delivery'),
    bounced = sumif(valueSum, eventType == 'Bounce' and permanent == 'true'),
    complained = sumif(valueSum, eventType == 'Complaint')
| extend known = delivered + bounced
'''

var bounceRateQuery = format('''{0}| where known >= {1}
| extend bounceRate = bounced / known
| where bounceRate >= {2}
| project bounceRate, bounced, known
''', ratesPrelude, minSample, bounceRate)

var complaintRateQuery = format('''{0}| where known >= {1}
| extend complaintRate = complained / known
| where complaintRate >= {2}
| project complaintRate, complained, known
''', ratesPrelude, minSample, complaintRate)

var throttlingQuery = format('''
customMetrics
| where name in ('sendmail.recipients.throttled', 'sendmail.recipients.sent')
| extend transport = tostring(customDimensions.transport)
| summarize throttled = sumif(valueSum, name == 'sendmail.recipients.throttled'),
    sent = sumif(valueSum, name == 'sendmail.recipients.sent') by transport
| where throttled >= {0}
| extend throttledPercent = 100.0 * throttled / (throttled + sent)
''', throttledFloor)

var failedSendsQuery = '''
customMetrics
| where name == 'sendmail.sends.finished'
| where tostring(customDimensions.state) == 'failed'
| extend api = tostring(customDimensions.api)
| summarize failed = sum(valueSum) by api
| where failed > 0
'''

var poisonedWebhooksQuery = '''
customMetrics
| where name == 'sendmail.webhooks.deliveries'
| where tostring(customDimensions.outcome) == 'poisoned'
| extend webhookEvent = tostring(customDimensions.event)
| summarize poisoned = sum(valueSum) by webhookEvent
| where poisoned > 0
'''

// ---------------------------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------------------------

resource guardTripped 'Microsoft.Insights/scheduledQueryRules@2026-03-01' = {
  name: '${namePrefix}-guard-tripped'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Send-Mail: the account guard tripped'
    description: 'The account guard tripped (reason: bounce_rate, complaint_rate or enforcement): bulk aws-sends are paused and new ones refused with 503 until an operator resets it with POST /api/v1/account/guard/reset. Look at GET /api/v1/account and at what bounced or complained before resetting.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: guardTrippedQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'trips'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'reason'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

resource bounceRateHigh 'Microsoft.Insights/scheduledQueryRules@2026-03-01' = {
  name: '${namePrefix}-bounce-rate'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Send-Mail: bounce rate high'
    description: 'Permanent bounces over the last 24 hours reached ${bounceRate} of the messages with a known fate (at least ${minSample} of them). SES reviews an account at about 5%. With the default (the guard\'s SENDMAIL_GUARD_BOUNCE_RATE) this fires as the guard trips; a lower alertBounceRate warns before.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'P1D'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: bounceRateQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

resource complaintRateHigh 'Microsoft.Insights/scheduledQueryRules@2026-03-01' = {
  name: '${namePrefix}-complaint-rate'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Send-Mail: complaint rate high'
    description: 'Complaints over the last 24 hours reached ${complaintRate} of the messages with a known fate (at least ${minSample} of them). SES reviews an account at about 0.1%. With the default (the guard\'s SENDMAIL_GUARD_COMPLAINT_RATE) this fires as the guard trips; a lower alertComplaintRate warns before.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'P1D'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: complaintRateQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

resource throttling 'Microsoft.Insights/scheduledQueryRules@2026-03-01' = {
  name: '${namePrefix}-throttling'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Send-Mail: sends throttled'
    description: 'Over 15 minutes at least ${throttledPercent}% of the SendEmail calls (SES) or SMTP sends were refused for the rate and tried again (${throttledFloor} refusals at least). The pacer keeps to the account\'s MaxSendRate, so this means another sender shares the SES account or its quota, or the SMTP server limits the sender: sends slow down and may reach their deadline.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: throttlingQuery
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'throttledPercent'
          operator: 'GreaterThanOrEqual'
          threshold: throttledPercent
          dimensions: [
            {
              name: 'transport'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

resource failedSends 'Microsoft.Insights/scheduledQueryRules@2026-03-01' = {
  name: '${namePrefix}-failed-sends'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Send-Mail: sends failed'
    description: 'A send ended in state failed (its orchestration failed; the recipients it had not settled were failed). The send id is in the logs (traces of the function app) and in GET /api/v1/sends/{id}.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: failedSendsQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'failed'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'api'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

resource poisonedWebhooks 'Microsoft.Insights/scheduledQueryRules@2026-03-01' = {
  name: '${namePrefix}-poisoned-webhooks'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Send-Mail: webhook deliveries given up'
    description: 'A webhook delivery was given up after every retry (poisoned): a caller\'s endpoint kept failing. The poisoned deliveries are kept (README, webhooks) until the retention timer purges them.'
    severity: 3
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT30M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: poisonedWebhooksQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'poisoned'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'webhookEvent'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroupIds
    }
  }
}
