// miniprogram_dist/ is committed, so that WeChat DevTools' "Build npm" works without a build
// step; this holds it to the sources: a fresh build into a temporary directory must match it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

test('the committed miniprogram_dist is what the sources build to', () => {
  const out = mkdtempSync(join(tmpdir(), 'identityd-miniprogram-'))
  try {
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json'), '--outDir', out], { stdio: 'inherit' })
    const committed = join(root, 'miniprogram_dist')
    const built = readdirSync(out).sort()
    assert.deepEqual(readdirSync(committed).sort(), built, 'the same files (run npm run build)')
    for (const file of built) {
      assert.equal(readFileSync(join(committed, file), 'utf8'), readFileSync(join(out, file), 'utf8'),
        `miniprogram_dist/${file} is stale: run npm run build and commit it`)
    }
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

test('the package points WeChat DevTools and TypeScript at the build', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  assert.equal(pkg.miniprogram, 'miniprogram_dist')
  assert.equal(pkg.main, 'miniprogram_dist/index.js')
  assert.equal(pkg.types, 'miniprogram_dist/index.d.ts')
  assert.deepEqual(pkg.dependencies, undefined, 'no runtime dependencies')
})
