// The demo's real pages, with the real SDK (../miniprogram, built), against a running
// `identityd dev`: what a person does in DevTools, end to end. Not part of `npm test` (it
// needs the service and the built SDK); run it with
//   IDENTITYD_URL=http://127.0.0.1:8080 IDENTITYD_SIM_URL=http://127.0.0.1:9080 npm run e2e
// (IDENTITYD_APPID: another app than dev's demo app). `cargo test` runs it against a test
// service (tests/tests/clients.rs).
require('../test/support/dom')
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const zlib = require('node:zlib')
const fs = require('node:fs')
const os = require('node:os')
const simulate = require('miniprogram-simulate')
const { createNodeWx } = require('./node-wx')
const { renderPage } = require('../test/support/page')

const BASE = process.env.IDENTITYD_URL
const SIM = process.env.IDENTITYD_SIM_URL
if (!BASE || !SIM) throw new Error('set IDENTITYD_URL and IDENTITYD_SIM_URL (see the top of this file)')

const ROOT = path.join(__dirname, '..', 'miniprogram')
const APPID = process.env.IDENTITYD_APPID || 'wxd000000000000001'
// A person of its own each run, so a run starts from a new user.
const PERSON = `e2e-${process.pid}-${Date.now()}`

function loadApp() {
  global.wx = createNodeWx()
  const config = require(path.join(ROOT, 'config.js'))
  Object.assign(config, { baseUrl: BASE, appid: APPID, simulator: { url: SIM, person: PERSON } })
  let app = null
  global.App = options => {
    app = options
  }
  require(path.join(ROOT, 'app.js'))
  global.getApp = () => app
  return app
}

// Waits until `done()` holds (the pages' calls go over the network).
async function until(done, what) {
  for (let i = 0; i < 200; i++) {
    if (done()) return
    await simulate.sleep(25)
  }
  assert.fail(`timed out waiting for ${what}`)
}

const text = (page, selector) => {
  const node = page.querySelector(selector)
  return node ? node.dom.textContent.trim() : ''
}

// An 8×8 red PNG, as chooseAvatar's temporary file.
function avatarFile() {
  const chunk = (type, data) => {
    const length = Buffer.alloc(4)
    length.writeUInt32BE(data.length)
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(zlib.crc32(Buffer.concat([Buffer.from(type), data])))
    return Buffer.concat([length, Buffer.from(type), data, crc])
  }
  const header = Buffer.alloc(13)
  header.writeUInt32BE(8, 0)
  header.writeUInt32BE(8, 4)
  header.set([8, 2, 0, 0, 0], 8)
  const rows = Buffer.concat(Array.from({ length: 8 }, () => Buffer.from([0, ...Array(8).fill([255, 0, 0]).flat()])))
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'demo-e2e-')), 'avatar.png')
  fs.writeFileSync(file, Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header), chunk('IDAT', zlib.deflateSync(rows)), chunk('IEND', Buffer.alloc(0)),
  ]))
  return file
}

async function postJson(url, body, headers = {}) {
  const response = await fetch(url, { method: 'POST', headers: Object.assign({ 'content-type': 'application/json' }, headers), body: JSON.stringify(body) })
  return response.json()
}

test('login, profile, phone and sessions through the real SDK and identityd dev', async () => {
  const app = loadApp()
  app.onLaunch()
  await until(() => app.launch.state().status !== 'pending', 'the launch login')
  assert.equal(app.launch.state().status, 'ready', app.launch.state().error)

  const profile = renderPage('profile')
  await until(() => profile.querySelector('#save'), 'the profile form')
  profile.querySelector('#nickname').dispatchEvent('input', { detail: { value: 'Alice' } })
  profile.querySelector('#choose-avatar').dispatchEvent('chooseavatar', { detail: { avatarUrl: avatarFile() } })
  await simulate.sleep(10)
  profile.querySelector('#save').dispatchEvent('tap')
  await until(() => text(profile, '.message'), 'the save')
  assert.equal(text(profile, '.message'), 'Saved.')
  assert.equal(profile.instance.data.savedNickname, 'Alice')
  assert.match(profile.instance.data.avatarUrl, /^https?:\/\//)

  profile.querySelector('#phone').dispatchEvent('getphonenumber', { detail: { errMsg: 'getPhoneNumber:fail user deny' } })
  await until(() => text(profile, '.message') !== 'Saved.', 'the refusal')
  assert.match(text(profile, '.message'), /^No problem/)
  profile.querySelector('#phone').dispatchEvent('getphonenumber', { detail: { errMsg: 'getPhoneNumber:ok', code: 'devtools' } })
  await until(() => text(profile, '.phone'), 'the phone number')
  assert.match(text(profile, '.phone'), /^1\d\d\*{4}\d{4}$/)

  // A second device of the same person logs in (as the curl walk-through would).
  const { code } = await postJson(`${SIM}/sim/wx.login`, { appid: APPID, user: PERSON })
  const other = await postJson(`${BASE}/v1/wechat/login`, { appid: APPID, code }, { 'user-agent': 'curl/8.5.0' })
  const otherSession = JSON.parse(Buffer.from(other.access_token.split('.')[1], 'base64url')).sid

  const sessions = renderPage('sessions')
  // The list comes from a read model a moment behind: list again until the new login shows.
  await until(() => {
    if (!sessions.instance.data.loading && !sessions.instance.data.rows.some(row => row.id === otherSession)) {
      sessions.instance.refresh()
    }
    return sessions.instance.data.rows.some(row => row.id === otherSession)
  }, 'the second device in the list')
  assert.equal(sessions.instance.data.rows[0].current, true)

  const end = sessions.querySelectorAll('.end-session')
    .find(button => button.toJSON().attrs.some(a => a.name === 'data-id' && a.value === otherSession))
  end.dispatchEvent('tap')
  await until(() => text(sessions, '.message'), 'the end of the session')
  assert.equal(text(sessions, '.message'), 'That device is logged out.')
  const me = await fetch(`${BASE}/v1/me`, { headers: { authorization: `Bearer ${other.access_token}` } })
  assert.equal(me.status, 401)

  sessions.querySelector('.logout').dispatchEvent('tap')
  await until(() => app.launch.state().status === 'logged_out', 'the logout')
})
