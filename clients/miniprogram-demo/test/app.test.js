// app.js and the project files DevTools opens: the launch login and the configuration.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const sdk = require('./support/stub-sdk')
const { IdentityError, user } = require('./support/fake-identity')
const { fakeWx } = require('./support/fake-wx')

const DEMO = path.join(__dirname, '..')
const ROOT = path.join(DEMO, 'miniprogram')
const readJson = file => JSON.parse(fs.readFileSync(path.join(DEMO, file), 'utf8'))

const config = require(path.join(ROOT, 'config.js'))

// Evaluates app.js afresh, with `wx` as the global wx, and returns the object it gave App(),
// with its IdentityClient.
function loadApp(wx = fakeWx()) {
  global.wx = wx
  let registered = null
  global.App = options => {
    registered = options
  }
  const file = require.resolve(path.join(ROOT, 'app.js'))
  delete require.cache[file]
  require(file)
  return { app: registered, identity: sdk.clients[sdk.clients.length - 1] }
}

test('the client is made once, for the configured service and app', t => {
  const configured = config.simulator.url
  t.after(() => {
    config.simulator.url = configured
  })
  config.simulator.url = ''
  const before = sdk.clients.length
  const { app, identity } = loadApp()
  assert.equal(sdk.clients.length, before + 1)
  assert.deepEqual(identity.options, { baseUrl: 'http://127.0.0.1:8080', appid: 'wxd000000000000001' })
  assert.equal(app.identity, identity)
  assert.equal(app.simulator, null)
})

test("with the simulator configured, the client's wx takes its login codes from it", async t => {
  const configured = config.simulator.url
  t.after(() => {
    config.simulator.url = configured
  })
  config.simulator.url = 'http://127.0.0.1:41234'
  const wx = fakeWx([{ statusCode: 200, data: { code: 'sim-code' } }])
  const { app, identity } = loadApp(wx)
  assert.ok(app.simulator)
  assert.equal(identity.options.wx, app.simulator.wx)
  const code = await new Promise(resolve => identity.options.wx.login({ success: res => resolve(res.code) }))
  assert.equal(code, 'sim-code')
  assert.equal(wx.requests[0].url, 'http://127.0.0.1:41234/sim/wx.login')
})

test('onLaunch logs in silently and the app holds the user', async () => {
  const { app, identity } = loadApp()
  const ada = user({ profile: { nickname: 'Ada' } })
  identity.answer('login', ada)
  assert.equal(app.launch.state().status, 'pending')
  app.onLaunch()
  assert.equal(identity.callsTo('login').length, 1)
  await app.launch.login()
  assert.equal(identity.callsTo('login').length, 1, 'a login already running is joined')
  assert.deepEqual(app.launch.state(), { status: 'ready', user: ada, error: '' })
})

test('a failed launch login leaves a failed state with the reason, not an exception', async () => {
  const { app, identity } = loadApp()
  identity.answer('login', new IdentityError('user_blocked', 403))
  app.onLaunch()
  assert.equal(await app.launch.login(), null)
  assert.equal(app.launch.state().status, 'failed')
  assert.equal(app.launch.state().error, 'This account has been blocked by the administrator.')
})

test('DevTools opens the demo app, talks http to the local service and builds npm from package.json', () => {
  const project = readJson('project.config.json')
  assert.equal(project.appid, config.appid)
  assert.equal(project.miniprogramRoot, 'miniprogram/')
  assert.equal(project.setting.urlCheck, false)
  assert.equal(project.setting.packNpmManually, true)
  assert.deepEqual(project.setting.packNpmRelationList, [
    { packageJsonPath: './package.json', miniprogramNpmDistDir: './miniprogram/' },
  ])
  assert.equal(readJson('package.json').dependencies['identityd-miniprogram'], 'file:../miniprogram')
})

test('every page app.json lists exists with its four files', () => {
  const app = readJson('miniprogram/app.json')
  for (const page of app.pages) {
    for (const ext of ['js', 'json', 'wxml', 'wxss']) {
      assert.ok(fs.existsSync(path.join(ROOT, `${page}.${ext}`)), `${page}.${ext}`)
    }
  }
  for (const tab of app.tabBar.list) assert.ok(app.pages.includes(tab.pagePath), tab.pagePath)
})
