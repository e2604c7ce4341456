// An Azure Monitor workbook of the service's metrics, shared and linked to the Application Insights
// component (it is listed under the component's Workbooks). Its content is workbook.json beside
// this file (Notebook/1.0, the format the portal's Advanced editor shows); its queries read the
// component's `customMetrics` as alerts.bicep explains. tests/infra/test_monitoring.py checks
// that the JSON parses and names only metrics of the catalogue (sendmail/platform/telemetry.py).

@description('Azure region, passed down from main.bicep (the resource group\'s location).')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Application Insights component the workbook reads (monitoring.bicep).')
param applicationInsightsName string

@description('Title of the workbook in the portal.')
param displayName string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// The component's id is where the workbook looks when it is opened outside the component (the
// gallery of the resource group, a link): its fallback resource.
var serializedData = replace(loadTextContent('workbook.json'), '__APPLICATION_INSIGHTS_ID__', applicationInsights.id)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; derived from the component, it stays the same across
  // deployments, so a redeployment updates the workbook instead of adding another.
  name: guid(applicationInsights.id, 'send-mail-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: toLower(applicationInsights.id)
    serializedData: serializedData
    version: 'Notebook/1.0'
  }
}

output workbookId string = workbook.id
