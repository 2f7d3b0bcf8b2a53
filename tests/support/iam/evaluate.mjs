// Evaluates IAM requests against identity policies with iam-simulate (npm,
// @cloud-copilot/iam-simulate): AWS's evaluation logic, every condition operator, and
// validation of actions and resource types against AWS's published IAM data.
// stdin:  {"policies": {"<name>": <policy document>}, "requests": [{"policy", "action",
//          "resource", "context": {key: value}}]}
// stdout: [{"result": "Allowed"|"ImplicitlyDenied"|"ExplicitlyDenied", "allowedBy": [sid],
//          "validation": null | "<why iam-simulate refused to validate the request>"}]
import { runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'

const ACCOUNT = '123456789012'
const input = JSON.parse(await new Promise((resolve) => {
  let text = ''
  process.stdin.on('data', (chunk) => { text += chunk })
  process.stdin.on('end', () => resolve(text))
}))

function simulation(policy, request) {
  return {
    identityPolicies: [{ name: request.policy, policy }],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      action: request.action,
      principal: `arn:aws:iam::${ACCOUNT}:role/${request.policy}`,
      resource: { resource: request.resource, accountId: ACCOUNT },
      contextVariables: request.context || {},
    },
  }
}

function allowedBy(result) {
  const statements = result?.analysis?.identityAnalysis?.allowStatements || []
  return statements.map((s) => s.explain?.identifier ?? s.statement?.sid?.() ?? '?')
}

const out = []
for (const request of input.requests) {
  const policy = input.policies[request.policy]
  const checked = await runSimulation(simulation(policy, request), {})
  if (checked.resultType === 'single') {
    out.push({ result: checked.overallResult, allowedBy: allowedBy(checked.result), validation: null })
    continue
  }
  // Refused before evaluating (an action newer than iam-data, say): evaluate anyway and
  // say so, so a gap in the data never passes silently.
  const validation = checked.resultType === 'error' ? JSON.stringify(checked.errors) : checked.resultType
  const result = runUnsafeSimulation(simulation(policy, request), {})
  const by = policy.Statement.filter((statement) => statement.Effect === 'Allow' &&
    runUnsafeSimulation(simulation({ ...policy, Statement: [statement] }, request), {}) === 'Allowed')
  out.push({ result, allowedBy: by.map((statement) => statement.Sid ?? '?'), validation })
}
process.stdout.write(JSON.stringify(out))
