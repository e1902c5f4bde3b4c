import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { after, describe, test } from 'node:test'
import { Counter, Registry } from 'prom-client'
import { createMetricsServer } from '../../src/metrics/metrics-server.js'
import { processStore } from '../support/process-store.js'
import { freePort, startSage } from '../support/sage-process.js'

describe('createMetricsServer', () => {
  const registry = new Registry()
  new Counter({ name: 'sage_probe_total', help: 'probe', registers: [registry] }).inc()
  const open = createMetricsServer(registry)
  const guarded = createMetricsServer(registry, { token: 'metrics-token-0123456789' })
  after(async () => {
    await open.close()
    await guarded.close()
  })
  const base = async (server: typeof open) => {
    await server.listen({ host: '127.0.0.1', port: 0 })
    return `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`
  }

  test('serves only /metrics', async () => {
    const url = await base(open)
    const res = await fetch(`${url}/metrics`)
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
    assert.match(await res.text(), /sage_probe_total 1/)
    assert.equal((await fetch(`${url}/v1/memories`)).status, 404)
    assert.equal((await fetch(`${url}/health`)).status, 404)
  })

  test('asks for METRICS_TOKEN when one is set', async () => {
    const url = await base(guarded)
    const denied = await fetch(`${url}/metrics`)
    assert.equal(denied.status, 401)
    assert.match(denied.headers.get('www-authenticate') ?? '', /^Bearer/)
    assert.equal((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 401)
    assert.equal((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer metrics-token-0123456789' } })).status, 200)
  })
})

describe('METRICS_PORT in the process', () => {
  test('/metrics moves to its own port on the same host, behind METRICS_TOKEN; the main port answers 404', async () => {
    const metricsPort = await freePort()
    const store = await processStore()
    const sage = await startSage({ ...store.env, METRICS_PORT: String(metricsPort), METRICS_TOKEN: 'metrics-token-0123456789' })
    try {
      assert.equal((await fetch(`${sage.url}/metrics`)).status, 404)
      assert.equal((await fetch(`${sage.url}/health`)).status, 200)
      const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`
      assert.equal((await fetch(metricsUrl)).status, 401)
      const res = await fetch(metricsUrl, { headers: { authorization: 'Bearer metrics-token-0123456789' } })
      assert.equal(res.status, 200)
      // The registry of the main app: its HTTP histogram counted the requests above.
      assert.match(await res.text(), /http_request_duration_seconds_count\{method="GET",route="\/health",status_code="200"\}/)
    } finally {
      assert.equal(await sage.stop('SIGTERM'), 0, sage.output())
      await store.drop()
    }
    // Both listeners closed with the process.
    await assert.rejects(fetch(`http://127.0.0.1:${metricsPort}/metrics`))
  })
})
