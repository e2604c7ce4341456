// The function app's storage account: AzureWebJobsStorage (host locks, Durable task hub queues,
// tables and blobs, the idempotency ledger table) and the Flex Consumption deployment container.
// Shared-key access is disabled: every client authenticates with Microsoft Entra ID (the app's
// user-assigned identity), so no connection string or account key exists anywhere.

@description('Azure region, passed down from main.bicep (the resource group\'s location).')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Redundancy (replicated SKUs only). ZRS keeps the task hub available through a zone outage.')
@allowed([
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string

@description('Blob container that Flex Consumption deploys the app package from.')
param deploymentContainerName string

@description('Blob container that Flex Consumption deploys the public app\'s package from. Empty: no public app.')
param publicDeploymentContainerName string

@description('Subnets (one per app: a subnet serves one plan) allowed through the storage firewall when restrictToSubnet is true.')
param subnetIds array

@description('Deny public network traffic except from subnetIds (needs the Microsoft.Storage service endpoint on each).')
param restrictToSubnet bool

var subnetRules = [for id in (restrictToSubnet ? subnetIds : []): {
  id: id
  action: 'Allow'
}]

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' = {
  // checkov:skip=CKV_AZURE_206: skuName is restricted by @allowed to replicated SKUs (ZRS, GRS, GZRS); checkov cannot resolve a module parameter.
  // checkov:skip=CKV_AZURE_43: The name is computed in main.bicep (take('st<appName><uniqueString>', 24): lowercase letters and digits, 3-24 chars); checkov cannot resolve a module parameter.
  // checkov:skip=CKV_AZURE_59: Public network access stays enabled so the Flex platform and the app (without VNet integration) can reach the account; access itself is identity-only (allowSharedKeyAccess false) and can be limited to the integration subnet with restrictToSubnet.
  // checkov:skip=CKV_AZURE_35: The default network action is Deny when restrictToSubnet is true (the template computes it); without VNet integration a Flex app has no fixed outbound addresses to allow, so Allow + Entra-only authentication is the documented default.
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    dnsEndpointType: 'Standard'
    isHnsEnabled: false
    isLocalUserEnabled: false
    isSftpEnabled: false
    minimumTlsVersion: 'TLS1_2'
    publicNetworkAccess: 'Enabled'
    supportsHttpsTrafficOnly: true
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: restrictToSubnet ? 'Deny' : 'Allow'
      virtualNetworkRules: subnetRules
      ipRules: []
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2025-06-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The public app's package (main.bicep deploys the public app when the caller allow-list is on):
// its own container, so publishing one app never replaces the other's package.
resource publicDeploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = if (!empty(publicDeploymentContainerName)) {
  parent: blobService
  name: publicDeploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Each send's recipient list and content (sendmail/sending/lists.py): written once at admission,
// read by slices by the batch activities. The app would create it on first use (it holds Storage
// Blob Data Owner); declaring it keeps it private and visible to ops.
resource sendsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {
  parent: blobService
  name: 'sendmail-sends'
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2025-06-01' = {
  parent: storage
  name: 'default'
}

// Webhook deliveries wait here (sendmail/feedback/webhooks/outbox.py), apart from the task hub's
// queues. Declared so that the public app's identity can be given the right to send to this one
// queue only (publicroles.bicep): it emits the email.* events of the SNS and unsubscribe routes.
resource webhookQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2025-06-01' = {
  parent: queueService
  name: 'sendmail-webhooks'
}

output storageAccountId string = storage.id
output storageAccountName string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
output sendsContainerName string = sendsContainer.name
output webhookQueueName string = webhookQueue.name
