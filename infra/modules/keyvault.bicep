// Key Vault for the service's secrets: the AWS SES credentials, the password-sealing key and the
// unsubscribe-token keys.
// RBAC authorization only (no access policies); soft delete and purge protection on.
// Secret values come from @secure() parameters when they are given; when a parameter is empty the
// secret is left alone, so ops can set (and rotate) it afterwards with `az keyvault secret set`
// and a later deployment never overwrites it. No secret value is ever an output.

@description('Azure region, passed down from main.bicep (the resource group\'s location).')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Key Vault name (3-24 letters, digits and hyphens, globally unique).')
@minLength(3)
@maxLength(24)
param keyVaultName string

@description('Log Analytics workspace receiving the vault\'s audit log (who read which secret).')
param workspaceId string

@description('Subnets (one per app) allowed through the vault firewall when restrictToSubnet is true.')
param subnetIds array

@description('Deny public network traffic except from subnetIds and operatorIpRanges (needs the Microsoft.KeyVault service endpoint on each).')
param restrictToSubnet bool

@description('CIDRs of operators allowed through the vault firewall when restrictToSubnet is true (to set secrets).')
param operatorIpRanges array

@description('Names of the secrets in the vault (the app settings reference these).')
param secretNames object

@secure()
@description('AWS access key id of the SES sending user. Empty: leave the secret as it is.')
param awsAccessKeyId string

@secure()
@description('AWS secret access key of the SES sending user. Empty: leave the secret as it is.')
param awsSecretAccessKey string

@secure()
@description('Fernet key(s), comma-separated, newest first. Empty: leave the secret as it is.')
param sealingKey string

@secure()
@description('Unsubscribe-token keys (url-safe base64, 32 bytes each), comma-separated, newest first. Empty: leave the secret as it is.')
param unsubscribeKeys string

var vaultIpRules = [for cidr in operatorIpRanges: {
  value: cidr
}]

var vaultSubnetRules = [for id in (restrictToSubnet ? subnetIds : []): {
  id: id
  ignoreMissingVnetServiceEndpoint: false
}]

resource vault 'Microsoft.KeyVault/vaults@2025-05-01' = {
  // checkov:skip=CKV_AZURE_109: The firewall default action is Deny when restrictToSubnet is true (computed); without VNet integration Key Vault references are resolved from App Service's shared outbound addresses, which cannot be allow-listed, so access is Entra ID + RBAC only.
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: restrictToSubnet ? 'Deny' : 'Allow'
      ipRules: restrictToSubnet ? vaultIpRules : []
      virtualNetworkRules: vaultSubnetRules
    }
  }
}

resource awsAccessKeyIdSecret 'Microsoft.KeyVault/vaults/secrets@2025-05-01' = if (!empty(awsAccessKeyId)) {
  // checkov:skip=CKV_AZURE_41: No expiry: an expired secret would silently break every send; rotation is an operator runbook (docs/deploy.md) and Key Vault audit logs go to Log Analytics.
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read the properties of a conditional (if) resource.
  parent: vault
  name: secretNames.awsAccessKeyId
  properties: {
    value: awsAccessKeyId
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource awsSecretAccessKeySecret 'Microsoft.KeyVault/vaults/secrets@2025-05-01' = if (!empty(awsSecretAccessKey)) {
  // checkov:skip=CKV_AZURE_41: No expiry: an expired secret would silently break every send; rotation is an operator runbook (docs/deploy.md) and Key Vault audit logs go to Log Analytics.
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read the properties of a conditional (if) resource.
  parent: vault
  name: secretNames.awsSecretAccessKey
  properties: {
    value: awsSecretAccessKey
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource sealingKeySecret 'Microsoft.KeyVault/vaults/secrets@2025-05-01' = if (!empty(sealingKey)) {
  // checkov:skip=CKV_AZURE_41: No expiry: an expired secret would silently break every send; rotation is an operator runbook (docs/deploy.md) and Key Vault audit logs go to Log Analytics.
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read the properties of a conditional (if) resource.
  parent: vault
  name: secretNames.sealingKey
  properties: {
    value: sealingKey
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource unsubscribeKeysSecret 'Microsoft.KeyVault/vaults/secrets@2025-05-01' = if (!empty(unsubscribeKeys)) {
  // checkov:skip=CKV_AZURE_41: No expiry: an expired secret would break every unsubscribe link already mailed; rotation (a new key first, the old kept while mail that carries it may be opened) is an operator runbook (docs/deploy.md).
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read the properties of a conditional (if) resource.
  parent: vault
  name: secretNames.unsubscribeKeys
  properties: {
    value: unsubscribeKeys
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource vaultAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output keyVaultId string = vault.id
output keyVaultName string = vault.name
output keyVaultUri string = vault.properties.vaultUri
