// Flex Consumption plan (FC1, Linux) and the Send-Mail function app (Python, Durable Functions).
// The app reaches storage, Application Insights and Key Vault with its user-assigned identity
// only: AzureWebJobsStorage__* identity settings, APPLICATIONINSIGHTS_AUTHENTICATION_STRING,
// Key Vault references resolved with keyVaultReferenceIdentity. Settings that Flex Consumption
// rejects (FUNCTIONS_WORKER_RUNTIME, WEBSITE_RUN_FROM_PACKAGE, linuxFxVersion, content-share
// settings...) are deliberately absent: functionAppConfig carries the runtime and the package.

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

@description('Upper bound of instances the app scales out to (caps cost and SES/SMTP pressure).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@description('Spread the plan\'s instances across availability zones (region must support it for Flex Consumption; pair with ZRS storage).')
param zoneRedundant bool

@description('Always-ready instances for the Durable group (orchestrators, activities, entities). 0 lets the app scale to zero.')
@minValue(0)
@maxValue(20)
param durableAlwaysReadyInstances int

@description('Storage account blob endpoint (https://<account>.blob.core.windows.net/).')
param blobEndpoint string

@description('Storage account queue endpoint.')
param queueEndpoint string

@description('Storage account table endpoint.')
param tableEndpoint string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights component name in this resource group.')
param applicationInsightsName string

@description('Key Vault URI (https://<vault>.vault.azure.net/).')
param keyVaultUri string

@description('Names of the Key Vault secrets referenced by app settings.')
param secretNames object

@description('CIDRs allowed to call the app. Empty: no IP restriction (function keys still apply).')
param allowedIpRanges array

@description('CIDRs allowed to the SCM (deployment) site when any IP restriction is in force.')
param operatorIpRanges array

@description('Subnet for regional VNet integration (delegated to Microsoft.App/environments). Empty: none.')
param virtualNetworkSubnetId string

@description('Application settings read by sendmail.settings.Settings (name: value as text).')
param sendMailSettings object

@description('SES configuration set (event destinations for bounces/complaints). Empty: not set.')
param sesConfigurationSet string

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
var restrictScm = restrictCallers || !empty(operatorIpRanges)

// Key Vault references without a version: the app follows the latest secret version.
var keyVaultReferences = {
  AWS_ACCESS_KEY_ID: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${secretNames.awsAccessKeyId})'
  AWS_SECRET_ACCESS_KEY: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${secretNames.awsSecretAccessKey})'
  SENDMAIL_SEALING_KEY: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${secretNames.sealingKey})'
}

var platformSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  // Sync activities run on this pool: sized to host.json's maxConcurrentActivityFunctions (8).
  PYTHON_THREADPOOL_THREAD_COUNT: '8'
}

var optionalSettings = empty(sesConfigurationSet) ? {} : {
  SENDMAIL_SES_CONFIGURATION_SET: sesConfigurationSet
}

var appSettings = union(platformSettings, keyVaultReferences, sendMailSettings, optionalSettings)

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
  // checkov:skip=CKV_AZURE_222: Callers reach the API over the internet, as in v1; inbound access is limited by the allowedIpRanges allow-list (default action Deny) and function keys. Use VNet integration + private endpoints for a private-only deployment.
  // checkov:skip=CKV_AZURE_17: Callers authenticate with function keys; mutual TLS client certificates are not part of the API contract.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales instances on demand; availability of the Durable workers is set with durableAlwaysReadyInstances (2+ for failover), not with a fixed minimum instance count.
  // checkov:skip=CKV_AZURE_213: Health check (healthCheckPath) is not supported on the Flex Consumption plan.
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
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
      ftpsState: 'Disabled'
      http20Enabled: true
      ipSecurityRestrictions: ipRestrictions
      ipSecurityRestrictionsDefaultAction: restrictCallers ? 'Deny' : 'Allow'
      scmIpSecurityRestrictions: scmIpRestrictions
      scmIpSecurityRestrictionsDefaultAction: restrictScm ? 'Deny' : 'Allow'
      scmIpSecurityRestrictionsUseMain: false
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
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
        alwaysReady: durableAlwaysReadyInstances > 0 ? [
          {
            name: 'durable'
            instanceCount: durableAlwaysReadyInstances
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

output functionAppId string = functionApp.id
output functionAppName string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
output planId string = plan.id
