// Production parameters for infra/main.bicep.
//   az deployment group what-if -g <rg> --template-file infra/main.bicep --parameters infra/main.bicepparam
//   az deployment group create  -g <rg> --template-file infra/main.bicep --parameters infra/main.bicepparam
// azd reads this file too (`azd up`); the AZURE_* variables below come from the azd environment.
// Secrets are never written here: they are read from the deployer's environment when set, and
// otherwise left for ops to put in Key Vault afterwards (docs/deploy.md, "Secrets").
using './main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'prod')
param appName = 'sendmail'

// Flex Consumption sizing. One always-ready Durable instance removes the cold start of the
// orchestrations; set 0 to scale to zero at idle (see "Cost at idle" in docs/deploy.md).
// maximumInstanceCount: 40..1000 on Flex. zoneRedundant (off here) raises always-ready to 2.
param pythonVersion = '3.11'
param instanceMemoryMB = 2048
// The public app (only with allowedIpRanges: unsubscribe, SNS events, health) needs little.
param publicAppInstanceMemoryMB = 512
param maximumInstanceCount = 40
param durableAlwaysReadyInstances = 1
param storageSkuName = 'Standard_ZRS'
param logRetentionInDays = 30

// Network. Callers' CIDRs (the v1 service's ACL); empty = open to the internet (function keys
// still required). Add /32 for a single address. Non-empty also deploys the public app (no IP
// restriction) for unsubscribe, SNS events and health: docs/deploy.md, "What stays public".
param allowedIpRanges = []
param operatorIpRanges = []
param virtualNetworkSubnetId = ''
param publicVirtualNetworkSubnetId = ''
param restrictDataPlaneToSubnet = false

// Whoever deploys gets Key Vault Secrets Officer (azd sets AZURE_PRINCIPAL_ID). Its kind must
// match: 'User' for a person; a pipeline signed in as a service principal sets
// AZURE_PRINCIPAL_TYPE=ServicePrincipal (otherwise: UnmatchedPrincipalType). docs/deploy.md.
param operatorPrincipalId = readEnvironmentVariable('AZURE_PRINCIPAL_ID', '')
param operatorPrincipalType = readEnvironmentVariable('AZURE_PRINCIPAL_TYPE', 'User')

// Secrets: only from the environment of the deployment, never committed.
param awsAccessKeyId = readEnvironmentVariable('SES_AWS_ACCESS_KEY_ID', '')
param awsSecretAccessKey = readEnvironmentVariable('SES_AWS_SECRET_ACCESS_KEY', '')
param sealingKey = readEnvironmentVariable('SENDMAIL_SEALING_KEY_VALUE', '')
param unsubscribeKeys = readEnvironmentVariable('SENDMAIL_UNSUBSCRIBE_KEYS_VALUE', '')
param operatorHostKey = readEnvironmentVariable('SENDMAIL_OPERATOR_HOST_KEY', '')

// Service settings (sendmail/settings.py).
param awsRegion = 'ap-northeast-2'
param allowedSenders = 'se@aifactory.page'
param allowedSenderDomains = ''
param sesBatchSize = 500
param sesMaxInFlightBatches = 4
param sesMaxRecipients = 1000000
param sesMaxConcurrency = 16
param sesBatchTimeBudgetSeconds = 300
param sesSendDeadlineSeconds = 3600
param sesConfigurationSet = ''
// SES events (docs/deploy.md, section 9): the topic of the configuration set's SNS destination.
param snsTopicArns = ''
param snsSignatureVersion = '2'
param suppressionEnabled = true
param idempotencyTtlHours = 24
// Retention (README, "What is stored, where, and for how long"): days kept, and when it runs (UTC).
param retentionDays = 30
param retentionSchedule = '0 30 3 * * *'
param maxQueuedBatches = 500
param maxSubjectChars = 998
param maxBodyBytes = 102400
param smtpConnections = 3
param smtpTimeoutSeconds = 30
param smtpLoginFailuresPerHour = 5
param smtpMaxAttempts = 3

// Alerts and the workbook (docs/deploy.md, "Alerts and the workbook"). The e-mail the alerts go
// to comes from the deployer's environment (empty: no action group; the alerts still fire and
// show in the portal). The rate thresholds default to the account guard's own (settings.py):
// lower them to hear before the guard trips.
param alertEmail = readEnvironmentVariable('SENDMAIL_ALERT_EMAIL', '')
param alertBounceRate = '0.04'
param alertComplaintRate = '0.0008'
param alertMinSample = 500
param alertThrottledPercent = 10
