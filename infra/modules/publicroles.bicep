// Role assignments for the public app's own user-assigned identity (main.bicep deploys the public
// app when the caller IP allow-list is on). The public app serves unsubscribe, the SNS events
// route and health, and runs no Durable function, so its identity gets what the Functions host
// alone needs plus the service's tables, and deliberately NO Storage Queue Data Contributor: the
// task hub's control and work-item queues stay out of its reach whatever the code does.
//
// "Connecting to host storage with an identity" (learn.microsoft.com/azure/azure-functions/
// functions-reference#connecting-to-host-storage-with-an-identity): a host without extensions
// needs Storage Blob Data Owner (coordination, the default key store: the SNS route's function
// key) and, for diagnostic events, Storage Table Data Contributor — which also covers the
// suppression list, the SNS replay guard and the events table the public routes write. The blob
// role also lets the Flex platform fetch the app's package with this identity. Monitoring
// Metrics Publisher sends telemetry with Entra ID; Key Vault Secrets User resolves the
// SENDMAIL_UNSUBSCRIBE_KEYS reference (at the vault: a role on the one secret would need the
// secret to exist before every deployment, which breaks "set it in Key Vault afterwards").

@description('Principal (object) id of the public app\'s user-assigned identity.')
param principalId string

@description('Name of the storage account in this resource group (the host storage both apps share).')
param storageAccountName string

@description('Name of the webhook queue (storage.bicep): the one queue this identity may send to.')
param webhookQueueName string

@description('Name of the Application Insights component in this resource group.')
param applicationInsightsName string

@description('Name of the Key Vault in this resource group.')
param keyVaultName string

// Built-in role definition ids (the same in every tenant).
var roleIds = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
}

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2025-06-01' existing = {
  parent: storage
  name: 'default'
}

resource webhookQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2025-06-01' existing = {
  parent: queueService
  name: webhookQueueName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2025-05-01' existing = {
  name: keyVaultName
}

resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Send-Mail public app: Functions host coordination and key store, deployment package'
  }
}

resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleIds.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Send-Mail public app: suppression list, SES events, SNS replay guard, host diagnostic events'
  }
}

// The email.* webhooks of the SNS and unsubscribe routes: send to the webhook queue, that queue
// only (not the task hub's queues, which stay out of reach).
resource webhookSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(webhookQueue.id, principalId, roleIds.storageQueueDataMessageSender)
  scope: webhookQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataMessageSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Send-Mail public app: queue webhook deliveries (sendmail-webhooks only)'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, roleIds.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Send-Mail public app: telemetry to Application Insights with Entra ID authentication'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roleIds.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Send-Mail public app: resolve the unsubscribe keys Key Vault reference'
  }
}
