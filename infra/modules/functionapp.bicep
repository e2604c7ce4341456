// Flex Consumption plan (FC1, Linux) and a Send-Mail function app (Python, Durable Functions).
// main.bicep calls it twice when the caller IP allow-list is on: the main app (functions 'all',
// the allow-list) and the public app (functions 'public': unsubscribe, SNS events and health, no
// IP restriction, no Durable functions); one app per Flex plan, so each call has its own plan.
// The app reaches storage, Application Insights and Key Vault with its user-assigned identity
// only: AzureWebJobsStorage__* identity settings, APPLICATIONINSIGHTS_AUTHENTICATION_STRING,
// Key Vault references resolved with keyVaultReferenceIdentity. The site properties and app
// settings that Microsoft lists as deprecated on Flex Consumption (FUNCTIONS_WORKER_RUNTIME,
// WEBSITE_RUN_FROM_PACKAGE, linuxFxVersion, ftpsState, content-share settings...; see
// https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations)
// are deliberately absent: functionAppConfig carries the runtime, the package and the scale.
// tests/infra checks all of this, with the source of each rule.

@description('Azure region, passed down from main.bicep (the resource group\'s location).')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Flex Consumption plan name.')
param planName string

@description('Function app name (the host name is <name>.azurewebsites.net).')
param functionAppName string

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('SENDMAIL_FUNCTIONS: all (the main app) or public (only unsubscribe, SNS events and health; no Durable functions, no SES or sealing secrets).')
@allowed([
  'all'
  'public'
])
param functions string

@description('azd service name this app is tagged with (azure.yaml): api for the main app, public for the public app.')
param azdServiceName string

@description('SENDMAIL_PUBLIC_BASE_URL: https address mail clients reach the unsubscribe routes at. Empty: this app\'s own.')
param publicBaseUrl string

@description('Python version of the Flex runtime.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string

@description('Memory per instance in MB (Flex Consumption instance sizes).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@description('Upper bound of on-demand instances per function group (HTTP and Durable each). Flex Consumption accepts 40 to 1000.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('Spread the plan\'s instances across availability zones (region must support it for Flex Consumption; pair with ZRS storage). Raises the Durable group\'s always-ready count to at least 2.')
param zoneRedundant bool

@description('Always-ready instances for the Durable group (orchestrators, activities, entities). 0 lets the app scale to zero; with zoneRedundant at least 2 are configured.')
@minValue(0)
@maxValue(20)
param durableAlwaysReadyInstances int

@description('Name of the storage account behind AzureWebJobsStorage (the blob/queue/table endpoints below are its own).')
param storageAccountName string

@description('Storage account blob endpoint (its primaryEndpoints.blob).')
param blobEndpoint string

@description('Storage account queue endpoint.')
param queueEndpoint string

@description('Storage account table endpoint.')
param tableEndpoint string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights component name in this resource group.')
param applicationInsightsName string

@description('Key Vault URI (its properties.vaultUri).')
param keyVaultUri string

@description('Names of the Key Vault secrets referenced by app settings.')
param secretNames object

@description('CIDRs allowed to call the app. Empty: no IP restriction (function keys still apply).')
param allowedIpRanges array

@description('CIDRs allowed to the SCM (deployment) site when restrictScm is true.')
param operatorIpRanges array

@description('Deny the SCM (deployment) site to everyone but operatorIpRanges: main.bicep sets it for both apps when either allow-list is set.')
param restrictScm bool

@description('Subnet for regional VNet integration (delegated to Microsoft.App/environments). Empty: none.')
param virtualNetworkSubnetId string

@description('Application settings read by sendmail.platform.settings.Settings (name: value as text).')
param sendMailSettings object

@description('SES configuration set (event destinations for bounces/complaints). Empty: not set.')
param sesConfigurationSet string

@secure()
@description('Value of the operators\' host key "operators". Empty: not created here.')
param operatorHostKey string

var ipRestrictions = [for (cidr, i) in allowedIpRanges: {
  name: 'allow-caller-${i}'
  description: 'Caller allow-list (allowedIpRanges)'
  ipAddress: cidr
  action: 'Allow'
  priority: 100 + i
}]

var scmIpRestrictions = [for (cidr, i) in operatorIpRanges: {
  name: 'allow-operator-${i}'
  description: 'Deployment/operator allow-list (operatorIpRanges)'
  ipAddress: cidr
  action: 'Allow'
  priority: 100 + i
}]

var restrictCallers = !empty(allowedIpRanges)
var runsDurable = functions == 'all'

// Flex Consumption refuses fewer than two always-ready instances per function group on a
// zone-redundant plan ("No less than two always-ready instances can be configured per function or
// function group while zone redundancy is enabled", learn.microsoft.com/azure/azure-functions/
// flex-consumption-plan#always-ready-instances), and keeps (and bills) two there whatever is
// configured. So a zone-redundant plan gets at least two: the template deploys instead of failing.
// The public app has no Durable function, hence no durable group to keep ready.
var durableAlwaysReady = !runsDurable ? 0 : (zoneRedundant ? max(durableAlwaysReadyInstances, 2) : durableAlwaysReadyInstances)

// Key Vault references without a version: the app follows the latest secret version. Only the
// main app sends, so only it gets the SES credentials and the sealing key; both apps read the
// unsubscribe keys (the main app makes tokens with them; both apps read tokens).
var sendingSecretReferences = runsDurable ? {
  AWS_ACCESS_KEY_ID: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${secretNames.awsAccessKeyId})'
  AWS_SECRET_ACCESS_KEY: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${secretNames.awsSecretAccessKey})'
  SENDMAIL_SEALING_KEY: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${secretNames.sealingKey})'
} : {}
var keyVaultReferences = union(sendingSecretReferences, {
  SENDMAIL_UNSUBSCRIBE_KEYS: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${secretNames.unsubscribeKeys})'
})

// What this app serves, and where mail clients reach the unsubscribe routes. An app's default host
// name is <name>.azurewebsites.net unless autoGeneratedDomainNameLabelScope asks for a unique one
// (it is not set here); the site cannot read its own defaultHostName in its own properties.
var roleSettings = {
  SENDMAIL_FUNCTIONS: functions
  SENDMAIL_PUBLIC_BASE_URL: empty(publicBaseUrl) ? 'https://${functionAppName}.azurewebsites.net' : publicBaseUrl
}

// Identity-based host storage for the Functions host and the Durable task hub (blob, queue AND
// table), with a user-assigned identity: __credential + __clientId (Durable does not take
// __managedIdentityResourceId). __accountName beside the service URIs: the host can fail to build
// its BlobServiceClient at start-up with service URIs only (Azure/azure-functions-host#11787).
var platformSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  // Sync activities AND orchestrator episodes run on this one pool: sized to host.json's
  // maxConcurrentActivityFunctions (8) + maxConcurrentOrchestratorFunctions (4), so long SES
  // batches never hold up the episodes that schedule the next ones.
  PYTHON_THREADPOOL_THREAD_COUNT: '12'
}

var optionalSettings = empty(sesConfigurationSet) ? {} : {
  SENDMAIL_SES_CONFIGURATION_SET: sesConfigurationSet
}

// A `for` may only iterate values known when the deployment starts (Bicep BCP178, checked through
// variables): these settings come from parameters only. The one run-time value, the connection
// string of the existing Application Insights component, is appended after the loop in siteConfig.
var startSettings = union(platformSettings, keyVaultReferences, sendMailSettings, optionalSettings, roleSettings)
var startSettingList = [for setting in items(startSettings): {
  name: setting.key
  value: setting.value
}]

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy is the zoneRedundant parameter (off by default: Flex Consumption offers it only in some regions); checkov cannot resolve a module parameter.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2025-03-01' = {
  // checkov:skip=CKV_AZURE_222: Callers reach the API over the internet, as in v1; inbound access is limited by the allowedIpRanges allow-list (default action Deny) and function keys. The public app (functions 'public') is open by design: mail clients and SNS have no address to allow; its routes are the anonymous unsubscribe ones (an encrypted token each), health, and the SNS route (function key and SNS signature).
  // checkov:skip=CKV_AZURE_17: Callers authenticate with function keys; mutual TLS client certificates are not part of the API contract.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales instances on demand; availability of the Durable workers is set with durableAlwaysReadyInstances (2+ for failover), not with a fixed minimum instance count.
  // checkov:skip=CKV_AZURE_213: Health check (healthCheckPath) is not supported on the Flex Consumption plan.
  // checkov:skip=CKV_AZURE_78: Flex Consumption rejects siteConfig.ftpsState (ARM error 51021; Microsoft lists it as deprecated: FTPS not supported); FTP publishing does not exist there, and basic-auth publishing is disabled below.
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      ipSecurityRestrictions: ipRestrictions
      ipSecurityRestrictionsDefaultAction: restrictCallers ? 'Deny' : 'Allow'
      scmIpSecurityRestrictions: scmIpRestrictions
      scmIpSecurityRestrictionsDefaultAction: restrictScm ? 'Deny' : 'Allow'
      scmIpSecurityRestrictionsUseMain: false
      appSettings: concat(startSettingList, [
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsights.properties.ConnectionString
        }
      ])
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: durableAlwaysReady > 0 ? [
          {
            name: 'durable'
            instanceCount: durableAlwaysReady
          }
        ] : []
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Publishing goes through Microsoft Entra ID (az/func/azd); no FTP or SCM basic-auth credentials.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// Keys: operators get a host key (every function-level route); callers get per-function keys
// on the caller routes only, set after the code is deployed (they need the functions to exist):
// scripts/function_keys.py, run by azd's postdeploy hook. No route uses the admin level, so the
// master key (which also manages keys and the host's admin API) is never handed out.
resource host 'Microsoft.Web/sites/host@2025-03-01' existing = {
  parent: functionApp
  name: 'default'
}

resource operatorKey 'Microsoft.Web/sites/host/functionKeys@2025-03-01' = if (!empty(operatorHostKey)) {
  parent: host
  name: 'operators'
  properties: {
    name: 'operators'
    value: operatorHostKey
  }
}

output functionAppId string = functionApp.id
output functionAppName string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
output planId string = plan.id
