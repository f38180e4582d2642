// The end-to-end runner needs a service (the Rust suite launches it); here, only that it loads
// the build and refuses to start without its variables.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const runner = join(dirname(fileURLToPath(import.meta.url)), 'e2e', 'run.mjs')

test('the e2e runner loads and asks for IDENTITY_URL when it is unset', () => {
  const env = Object.assign({}, process.env)
  delete env.IDENTITY_URL
  const run = spawnSync(process.execPath, [runner], { env, encoding: 'utf8' })
  assert.equal(run.status, 2, run.stderr)
  assert.match(run.stderr, /set IDENTITY_URL/)
})
