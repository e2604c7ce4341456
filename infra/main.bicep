// Send-Mail on Azure: a Python Durable Functions app on Flex Consumption, reaching its storage,
// telemetry and secrets with a user-assigned managed identity — no keys anywhere. With the caller
// IP allow-list on, a second small app (the public app: same package, SENDMAIL_FUNCTIONS=public,
// its own plan and identity, no IP restriction) serves the routes that must answer anyone:
// unsubscribe, the SNS events route and health (docs/deploy.md, "What stays public").
// Deploy at resource-group scope (docs/deploy.md):
//   az deployment group create -g <rg> --template-file infra/main.bicep --parameters infra/main.bicepparam
// or `azd up` (azure.yaml at the repository root).

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Naming and placement
// ---------------------------------------------------------------------------------------------

@description('Environment name (azd env name, e.g. prod, staging). Part of the names and tags.')
@minLength(1)
@maxLength(16)
param environmentName string

@description('Short application prefix for resource names: lowercase letters and digits only.')
@minLength(3)
@maxLength(10)
param appName string = 'sendmail'

@description('Region of every resource. Defaults to the resource group\'s region, which must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Extra tags merged into the standard ones.')
param extraTags object = {}

// ---------------------------------------------------------------------------------------------
// Hosting (Flex Consumption)
// ---------------------------------------------------------------------------------------------

@description('Python version of the Flex runtime.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Memory per instance in MB of the public app (deployed when allowedIpRanges is set: unsubscribe, SNS events, health).')
@allowed([
  512
  2048
  4096
])
param publicAppInstanceMemoryMB int = 512

@description('Maximum number of on-demand instances per function group (HTTP and Durable each). Flex Consumption accepts 40 (its lowest maximum) to 1000.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances for the Durable group. 0 scales to zero at idle (cold start on the next request); 1+ is billed while idle. With zoneRedundant, at least 2 are configured (Flex Consumption refuses fewer).')
@minValue(0)
@maxValue(20)
param durableAlwaysReadyInstances int = 0

@description('Zone-redundant Flex Consumption plan (only in regions that offer it; keep storageSkuName zone-redundant too). Raises the Durable always-ready count to at least 2, billed while idle.')
param zoneRedundant bool = false

@description('Storage redundancy of the app\'s storage account (replicated SKUs only).')
@allowed([
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_ZRS'

@description('Days that logs are kept in Log Analytics.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

// ---------------------------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------------------------

@description('Caller allow-list as CIDRs (e.g. 203.0.113.0/24, 198.51.100.7/32). Non-empty: every other source is denied (default action Deny), and a public app without IP restriction serves unsubscribe, SNS events and health. Empty: open, function keys only, one app.')
param allowedIpRanges array = []

@description('Operator/deployer CIDRs: allowed to the SCM (deployment) endpoint when restrictions are on, and through the Key Vault firewall when restrictDataPlaneToSubnet is true.')
param operatorIpRanges array = []

@description('Resource id of a subnet for regional VNet integration (delegated to Microsoft.App/environments). Empty: no VNet integration.')
param virtualNetworkSubnetId string = ''

@description('Resource id of a second subnet for the public app\'s VNet integration (a subnet serves one plan; delegated to Microsoft.App/environments). Empty: none. Needed with restrictDataPlaneToSubnet when allowedIpRanges is set.')
param publicVirtualNetworkSubnetId string = ''

@description('With VNet integration: deny the storage account and Key Vault to every network except the integration subnets (service endpoints Microsoft.Storage and Microsoft.KeyVault required on them) and operatorIpRanges.')
param restrictDataPlaneToSubnet bool = false

// ---------------------------------------------------------------------------------------------
// Operators
// ---------------------------------------------------------------------------------------------

@description('Object id of the operator (user, group or service principal) granted Key Vault Secrets Officer to set the secrets. Empty: none (grant it yourself).')
param operatorPrincipalId string = ''

@description('Kind of principal operatorPrincipalId is: User for a person, ServicePrincipal for CI (main.bicepparam reads AZURE_PRINCIPAL_TYPE). A wrong kind fails the role assignment with UnmatchedPrincipalType.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

// ---------------------------------------------------------------------------------------------
// Secrets: stored in Key Vault only when given; otherwise set by ops afterwards (docs/deploy.md)
// ---------------------------------------------------------------------------------------------

@secure()
@description('AWS access key id of the SES sending IAM user. Empty: set it in Key Vault afterwards.')
param awsAccessKeyId string = ''

@secure()
@description('AWS secret access key of the SES sending IAM user. Empty: set it in Key Vault afterwards.')
param awsSecretAccessKey string = ''

@secure()
@description('Fernet key(s) sealing SMTP passwords, comma-separated, newest first. Empty: set it in Key Vault afterwards.')
param sealingKey string = ''

@secure()
@description('Unsubscribe-token keys (url-safe base64, 32 bytes each), comma-separated, newest first. Empty: set it in Key Vault afterwards.')
param unsubscribeKeys string = ''

@secure()
@description('The operators\' host key ("operators"): opens every function-level route, the operator-only ones (the suppression list) included; callers get per-function keys instead (scripts/function_keys.py). Empty: none is created by the deployment.')
param operatorHostKey string = ''

// ---------------------------------------------------------------------------------------------
// Application settings (names as read by sendmail/platform/settings.py; defaults are the code's)
// ---------------------------------------------------------------------------------------------

@description('AWS_REGION: region of the SES account.')
param awsRegion string = 'ap-northeast-2'

@description('SENDMAIL_ALLOWED_SENDERS: comma-separated sender addresses allowed on aws-send.')
param allowedSenders string = 'se@aifactory.page'

@description('SENDMAIL_ALLOWED_SENDER_DOMAINS: comma-separated domains whose every address is allowed on aws-send.')
param allowedSenderDomains string = ''

@description('SENDMAIL_SES_BATCH_SIZE: recipients per SES batch activity, at least (batches grow to about a minute of sending, at most 5000).')
@minValue(1)
@maxValue(5000)
param sesBatchSize int = 500

@description('SENDMAIL_SES_MAX_IN_FLIGHT_BATCHES: lanes per send: SES batch activities running at once, sharing the account rate.')
@minValue(1)
@maxValue(100)
param sesMaxInFlightBatches int = 4

@description('SENDMAIL_SES_MAX_RECIPIENTS: recipients accepted in one aws-send request.')
@minValue(1)
@maxValue(1000000)
param sesMaxRecipients int = 1000000

@description('SENDMAIL_SES_MAX_CONCURRENCY: most SendEmail calls in flight in one batch activity (the pace decides; this caps).')
@minValue(1)
@maxValue(64)
param sesMaxConcurrency int = 16

@description('SENDMAIL_SES_BATCH_TIME_BUDGET_SECONDS: how long one batch activity sends before handing what is left back (below functionTimeout).')
@minValue(5)
@maxValue(1500)
param sesBatchTimeBudgetSeconds int = 300

@description('SENDMAIL_SES_SEND_DEADLINE_SECONDS: the deadline of a send is this long past the time MaxSendRate needs for it; then recipients SES kept throttling or refusing are failed.')
@minValue(60)
@maxValue(604800)
param sesSendDeadlineSeconds int = 3600

@description('SENDMAIL_SES_CONFIGURATION_SET: SES configuration set for bounce/complaint events. Empty: not set.')
param sesConfigurationSet string = ''

@description('SENDMAIL_SNS_TOPIC_ARNS: comma-separated SNS topic ARNs the SES events route accepts (the configuration set event destination). Empty: every SNS message is refused.')
param snsTopicArns string = ''

@description('SENDMAIL_SNS_SIGNATURE_VERSION: the only SNS SignatureVersion the events route accepts; set the topic so (2: SHA256withRSA).')
@allowed([
  '1'
  '2'
])
param snsSignatureVersion string = '2'

@description('SENDMAIL_SUPPRESSION_ENABLED: aws-send skips addresses on the suppression list (hard bounces, complaints).')
param suppressionEnabled bool = true

@description('SENDMAIL_MAX_QUEUED_BATCHES: batches waiting in the task hub work-item queue above which sends are refused with 429.')
@minValue(1)
param maxQueuedBatches int = 500

@description('SENDMAIL_IDEMPOTENCY_TTL_HOURS: how long an Idempotency-Key names its send (at least 24).')
@minValue(24)
@maxValue(720)
param idempotencyTtlHours int = 24

@description('SENDMAIL_RETENTION_DAYS: days a finished send\'s data (Durable histories, list and content, ledger, events) and a poisoned webhook are kept before the retention timer purges them.')
@minValue(1)
@maxValue(3650)
param retentionDays int = 30

@description('SENDMAIL_RETENTION_SCHEDULE: when the retention timer runs (NCRONTAB with seconds, UTC). The host resolves the timer\'s %SENDMAIL_RETENTION_SCHEDULE% from this app setting: it must be set.')
@minLength(1)
param retentionSchedule string = '0 30 3 * * *'

@description('SENDMAIL_MAX_SUBJECT_CHARS: longest subject accepted.')
@minValue(1)
param maxSubjectChars int = 998

@description('SENDMAIL_MAX_BODY_BYTES: largest body accepted (UTF-8 bytes).')
@minValue(1)
param maxBodyBytes int = 102400

@description('SENDMAIL_SMTP_CONNECTIONS: parallel SMTP connections per user-send.')
@minValue(1)
@maxValue(10)
param smtpConnections int = 3

@description('SENDMAIL_SMTP_TIMEOUT_SECONDS: SMTP socket timeout in seconds.')
@minValue(1)
@maxValue(300)
param smtpTimeoutSeconds int = 30

@description('SENDMAIL_SMTP_LOGIN_FAILURES_PER_HOUR: failed SMTP logins per sender account in an hour after which user-send answers 429 without trying the provider.')
@minValue(1)
param smtpLoginFailuresPerHour int = 5

@description('SENDMAIL_SMTP_MAX_ATTEMPTS: attempts per recipient on 4xx replies or dropped connections.')
@minValue(1)
@maxValue(10)
param smtpMaxAttempts int = 3

// ---------------------------------------------------------------------------------------------
// Alerts and the workbook (modules/alerts.bicep, modules/workbook.bicep; docs/deploy.md)
// ---------------------------------------------------------------------------------------------

@description('E-mail address the alert rules notify (an action group with one e-mail receiver, common alert schema). Empty: no action group; the rules still fire and are listed under Azure Monitor > Alerts.')
param alertEmail string = ''

@description('Bounce rate (permanent bounces / (deliveries + permanent bounces), a decimal fraction) over the trailing 24 hours at which the bounce-rate alert fires. The default is SENDMAIL_GUARD_BOUNCE_RATE\'s: it fires as the guard trips; lower it to hear before.')
param alertBounceRate string = '0.04'

@description('Complaint rate (complaints / (deliveries + permanent bounces), a decimal fraction) over the trailing 24 hours at which the complaint-rate alert fires. The default is SENDMAIL_GUARD_COMPLAINT_RATE\'s: it fires as the guard trips; lower it to hear before.')
param alertComplaintRate string = '0.0008'

@description('Messages with a known fate in the trailing 24 hours before the rate alerts judge (SENDMAIL_GUARD_MIN_SAMPLE\'s default).')
@minValue(1)
param alertMinSample int = 500

@description('Percentage of the SendEmail calls (or SMTP sends) refused for the rate over 15 minutes at which the throttling alert fires.')
@minValue(1)
@maxValue(100)
param alertThrottledPercent int = 10

// ---------------------------------------------------------------------------------------------
// Names: unique per resource group + environment, stable across deployments
// ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(resourceGroup().id, environmentName, appName))
var names = {
  identity: 'id-${appName}-${resourceToken}'
  plan: 'plan-${appName}-${resourceToken}'
  functionApp: 'func-${appName}-${resourceToken}'
  // The public app's names keep 'pub' before the token: its host id (the first 32 characters of
  // its name) differs from the main app's, and both share the host storage.
  publicIdentity: 'id-${appName}-pub-${resourceToken}'
  publicPlan: 'plan-${appName}-pub-${resourceToken}'
  publicFunctionApp: 'func-${appName}-pub-${resourceToken}'
  storage: take('st${replace(toLower(appName), '-', '')}${resourceToken}', 24) // 3-24 lowercase letters and digits
  keyVault: take('kv-${appName}-${resourceToken}', 24)
  workspace: 'log-${appName}-${resourceToken}'
  applicationInsights: 'appi-${appName}-${resourceToken}'
  actionGroup: 'ag-${appName}-${resourceToken}'
  alertPrefix: 'alert-${appName}-${resourceToken}'
  deploymentContainer: 'app-package'
  publicDeploymentContainer: 'app-package-public'
}

// The public app exists exactly when the caller allow-list does.
var hasPublicApp = !empty(allowedIpRanges)
// Both SCM (deployment) sites admit only operatorIpRanges as soon as either allow-list is set.
var restrictScm = hasPublicApp || !empty(operatorIpRanges)
var integrationSubnets = concat(empty(virtualNetworkSubnetId) ? [] : [
  virtualNetworkSubnetId
], hasPublicApp && !empty(publicVirtualNetworkSubnetId) ? [
  publicVirtualNetworkSubnetId
] : [])

var tags = union(extraTags, {
  'azd-env-name': environmentName
  application: 'send-mail'
})

// Key Vault secret names; the app settings reference them by URI.
var secretNames = {
  awsAccessKeyId: 'aws-access-key-id'
  awsSecretAccessKey: 'aws-secret-access-key'
  sealingKey: 'sendmail-sealing-key'
  unsubscribeKeys: 'sendmail-unsubscribe-keys'
}

// Everything the service reads from the environment besides secrets (see sendmail/platform/settings.py).
var sendMailSettings = {
  AWS_REGION: awsRegion
  SENDMAIL_ALLOWED_SENDERS: allowedSenders
  SENDMAIL_ALLOWED_SENDER_DOMAINS: allowedSenderDomains
  SENDMAIL_SES_BATCH_SIZE: string(sesBatchSize)
  SENDMAIL_SES_MAX_IN_FLIGHT_BATCHES: string(sesMaxInFlightBatches)
  SENDMAIL_SES_MAX_RECIPIENTS: string(sesMaxRecipients)
  SENDMAIL_SES_MAX_CONCURRENCY: string(sesMaxConcurrency)
  SENDMAIL_SES_BATCH_TIME_BUDGET_SECONDS: string(sesBatchTimeBudgetSeconds)
  SENDMAIL_SES_SEND_DEADLINE_SECONDS: string(sesSendDeadlineSeconds)
  SENDMAIL_IDEMPOTENCY_TTL_HOURS: string(idempotencyTtlHours)
  SENDMAIL_RETENTION_DAYS: string(retentionDays)
  SENDMAIL_RETENTION_SCHEDULE: retentionSchedule
  SENDMAIL_MAX_QUEUED_BATCHES: string(maxQueuedBatches)
  SENDMAIL_TASK_HUB: 'SendMail'
  SENDMAIL_MAX_SUBJECT_CHARS: string(maxSubjectChars)
  SENDMAIL_MAX_BODY_BYTES: string(maxBodyBytes)
  SENDMAIL_SMTP_CONNECTIONS: string(smtpConnections)
  SENDMAIL_SMTP_TIMEOUT_SECONDS: string(smtpTimeoutSeconds)
  SENDMAIL_SMTP_LOGIN_FAILURES_PER_HOUR: string(smtpLoginFailuresPerHour)
  SENDMAIL_SMTP_MAX_ATTEMPTS: string(smtpMaxAttempts)
  SENDMAIL_SNS_TOPIC_ARNS: snsTopicArns
  SENDMAIL_SNS_SIGNATURE_VERSION: snsSignatureVersion
  SENDMAIL_SUPPRESSION_ENABLED: string(suppressionEnabled)
}

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: names.identity
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'sendmail-monitoring'
  params: {
    location: location
    tags: tags
    workspaceName: names.workspace
    applicationInsightsName: names.applicationInsights
    retentionInDays: logRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'sendmail-storage'
  params: {
    location: location
    tags: tags
    storageAccountName: names.storage
    skuName: storageSkuName
    deploymentContainerName: names.deploymentContainer
    publicDeploymentContainerName: hasPublicApp ? names.publicDeploymentContainer : ''
    subnetIds: integrationSubnets
    restrictToSubnet: restrictDataPlaneToSubnet && !empty(virtualNetworkSubnetId)
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'sendmail-keyvault'
  params: {
    location: location
    tags: tags
    keyVaultName: names.keyVault
    workspaceId: monitoring.outputs.workspaceId
    subnetIds: integrationSubnets
    restrictToSubnet: restrictDataPlaneToSubnet && !empty(virtualNetworkSubnetId)
    operatorIpRanges: operatorIpRanges
    secretNames: secretNames
    awsAccessKeyId: awsAccessKeyId
    awsSecretAccessKey: awsSecretAccessKey
    sealingKey: sealingKey
    unsubscribeKeys: unsubscribeKeys
  }
}

module roles 'modules/roles.bicep' = {
  name: 'sendmail-roles'
  params: {
    principalId: identity.properties.principalId
    storageAccountName: storage.outputs.storageAccountName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.keyVaultName
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

// The public app: its own identity (no task-hub queue role, publicroles.bicep), its own Flex plan
// (one app per plan), no IP restriction, only the public functions.
resource publicIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = if (hasPublicApp) {
  name: names.publicIdentity
  location: location
  tags: tags
}

module publicRoles 'modules/publicroles.bicep' = if (hasPublicApp) {
  name: 'sendmail-public-roles'
  params: {
    principalId: publicIdentity.properties.principalId
    storageAccountName: storage.outputs.storageAccountName
    webhookQueueName: storage.outputs.webhookQueueName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.keyVaultName
  }
}

module publicApp 'modules/functionapp.bicep' = if (hasPublicApp) {
  name: 'sendmail-public-functionapp'
  params: {
    functions: 'public'
    azdServiceName: 'public'
    publicBaseUrl: ''
    location: location
    tags: tags
    planName: names.publicPlan
    functionAppName: names.publicFunctionApp
    identityId: publicIdentity.id
    identityClientId: publicIdentity.properties.clientId
    pythonVersion: pythonVersion
    instanceMemoryMB: publicAppInstanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    durableAlwaysReadyInstances: 0
    zoneRedundant: zoneRedundant
    storageAccountName: storage.outputs.storageAccountName
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: names.publicDeploymentContainer
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultUri: keyVault.outputs.keyVaultUri
    secretNames: secretNames
    allowedIpRanges: []
    operatorIpRanges: operatorIpRanges
    restrictScm: restrictScm
    virtualNetworkSubnetId: publicVirtualNetworkSubnetId
    sendMailSettings: sendMailSettings
    sesConfigurationSet: sesConfigurationSet
    operatorHostKey: ''
  }
  // The app must not start before its identity can read storage, telemetry and the vault (its
  // package container comes with the storage module, which storage.outputs already waits for).
  dependsOn: [
    publicRoles
  ]
}

// Alert rules on the service's metrics, an action group mailing alertEmail, and a workbook.
module alerts 'modules/alerts.bicep' = {
  name: 'sendmail-alerts'
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    namePrefix: names.alertPrefix
    actionGroupName: names.actionGroup
    actionGroupShortName: appName
    alertEmail: alertEmail
    bounceRate: alertBounceRate
    complaintRate: alertComplaintRate
    minSample: alertMinSample
    throttledPercent: alertThrottledPercent
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'sendmail-workbook'
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    displayName: 'Send-Mail (${environmentName})'
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'sendmail-functionapp'
  params: {
    functions: 'all'
    azdServiceName: 'api'
    // Mail clients reach the unsubscribe routes at the public app when the allow-list keeps
    // them from this one; otherwise here.
    publicBaseUrl: hasPublicApp ? 'https://${publicApp.outputs.defaultHostName}' : ''
    location: location
    tags: tags
    planName: names.plan
    functionAppName: names.functionApp
    identityId: identity.id
    identityClientId: identity.properties.clientId
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    durableAlwaysReadyInstances: durableAlwaysReadyInstances
    zoneRedundant: zoneRedundant
    storageAccountName: storage.outputs.storageAccountName
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultUri: keyVault.outputs.keyVaultUri
    secretNames: secretNames
    allowedIpRanges: allowedIpRanges
    operatorIpRanges: operatorIpRanges
    restrictScm: restrictScm
    virtualNetworkSubnetId: virtualNetworkSubnetId
    sendMailSettings: sendMailSettings
    sesConfigurationSet: sesConfigurationSet
    operatorHostKey: operatorHostKey
  }
  // The app must not start before its identity can read storage, telemetry and secrets.
  dependsOn: [
    roles
  ]
}

// ---------------------------------------------------------------------------------------------
// Outputs: names, host name and resource ids only — never a secret or a key
// ---------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.functionAppName
output AZURE_FUNCTION_APP_ID string = functionApp.outputs.functionAppId
output AZURE_FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName
output SERVICE_API_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}/api'
// The public app (allowedIpRanges set): azure.yaml deploys the 'public' service only when
// SENDMAIL_PUBLIC_APP is 'true'; SNS subscribes to its events route (docs/deploy.md, section 9).
output SENDMAIL_PUBLIC_APP string = hasPublicApp ? 'true' : 'false'
output AZURE_PUBLIC_FUNCTION_APP_NAME string = hasPublicApp ? publicApp.outputs.functionAppName : ''
output AZURE_PUBLIC_FUNCTION_APP_HOSTNAME string = hasPublicApp ? publicApp.outputs.defaultHostName : ''
output AZURE_PUBLIC_IDENTITY_PRINCIPAL_ID string = hasPublicApp ? publicIdentity.properties.principalId : ''
output AZURE_IDENTITY_ID string = identity.id
output AZURE_IDENTITY_CLIENT_ID string = identity.properties.clientId
output AZURE_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.storageAccountName
output AZURE_STORAGE_ACCOUNT_ID string = storage.outputs.storageAccountId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.keyVaultName
output AZURE_KEY_VAULT_ID string = keyVault.outputs.keyVaultId
output AZURE_KEY_VAULT_URI string = keyVault.outputs.keyVaultUri
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.workspaceId
