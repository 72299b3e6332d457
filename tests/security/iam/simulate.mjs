// Evaluate IAM requests with @cloud-copilot/iam-simulate.
//
// stdin: a JSON list of requests, each
//   {"id", "principal", "action", "resource", "account",
//    "identityPolicies": [{"name", "policy"}], "resourcePolicy": {...} | null,
//    "context": {"aws:PrincipalTag/TenantId": "...", "dynamodb:LeadingKeys": [...], ...}}
// stdout: a JSON list of {"id", "decision"} in the same order, where decision is
//   "Allowed", "ImplicitlyDenied" or "ExplicitlyDenied", or {"id", "error"} when the
//   simulator rejects the request as invalid.
import { runSimulation } from '@cloud-copilot/iam-simulate'

async function readStdin() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

async function simulate(request) {
  const simulation = {
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.account },
      contextVariables: request.context ?? {},
    },
    identityPolicies: request.identityPolicies ?? [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: request.resourcePolicy ?? undefined,
  }
  const response = await runSimulation(simulation, {})
  if (response.resultType === 'error') {
    return { id: request.id, error: response.errors }
  }
  return { id: request.id, decision: response.overallResult }
}

const requests = JSON.parse(await readStdin())
const results = []
for (const request of requests) results.push(await simulate(request))
process.stdout.write(JSON.stringify(results))
