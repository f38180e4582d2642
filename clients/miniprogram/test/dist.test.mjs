// miniprogram_dist/ is built, not committed (`npm ci` and `npm install` build it through the
// `prepare` script): a build must give what package.json names for WeChat DevTools and TypeScript.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

test('a build writes the entry point and the type declarations', () => {
  const out = mkdtempSync(join(tmpdir(), 'identityd-miniprogram-'))
  try {
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json'), '--outDir', out], { stdio: 'inherit' })
    for (const file of ['index.js', 'index.d.ts']) {
      assert.ok(existsSync(join(out, file)), `${file} is built`)
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
