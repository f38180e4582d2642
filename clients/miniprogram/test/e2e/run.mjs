#!/usr/bin/env node
// End-to-end run of the SDK against a real identityd and its WeChat simulator: a `wx` whose
// wx.login, wx.request and wx.uploadFile are real HTTP (the simulator plays the phone), then a
// scenario. Plain Node 18+ ESM, no dependencies; loads the build (miniprogram_dist; `npm ci` or `npm run build` makes it).
//
//   IDENTITY_URL=http://127.0.0.1:8080 SIM_URL=http://127.0.0.1:PORT \
//   APPID=wxd000000000000001 USER=alice AVATAR_PNG=path/to.png node test/e2e/run.mjs
//
// Prints one JSON object per step on stdout ({"step", "ok", …observations}); exits 1 when a
// step fails unexpectedly (the others still run). SKIP=step,step leaves steps out.

import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { randomUUID } from 'node:crypto'

const { IdentityClient, IdentityError } = createRequire(import.meta.url)('../../miniprogram_dist/index.js')

const env = process.env
const IDENTITY_URL = required('IDENTITY_URL').replace(/\/+$/, '')
const SIM_URL = required('SIM_URL').replace(/\/+$/, '')
const APPID = env.APPID || 'wxd000000000000001'
const USER = env.USER || `e2e-${randomUUID()}`
const AVATAR_PNG = env.AVATAR_PNG
const RISKY_NICKNAME = env.RISKY_NICKNAME || 'risky'
const SKIP = new Set((env.SKIP || '').split(',').map((s) => s.trim()).filter(Boolean))
const STORAGE_KEY = `identityd:${APPID}`

function required (name) {
  if (!env[name]) {
    console.error(`set ${name}`)
    process.exit(2)
  }
  return env[name]
}

async function postJson (url, body) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await res.text()
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${text}`)
  return JSON.parse(text)
}

/** A `wx` for one phone (`user`), with its own storage; `routes` records every call made. */
function realWx (user) {
  const storage = new Map()
  const wx = {
    routes: [],
    login ({ success, fail }) {
      postJson(`${SIM_URL}/sim/wx.login`, { appid: APPID, user })
        .then(({ code }) => success({ code, errMsg: 'login:ok' }), (err) => fail({ errMsg: `login:fail ${err.message}` }))
    },
    request ({ url, method = 'GET', header = {}, data, dataType, success, fail }) {
      wx.routes.push(`${method} ${new URL(url).pathname}`)
      fetch(url, { method, headers: header, body: data })
        .then(async (res) => {
          const text = await res.text()
          let body = text
          if (dataType === 'json') try { body = JSON.parse(text) } catch (_) {}
          success({ statusCode: res.status, data: body, header: Object.fromEntries(res.headers) })
        }, (err) => fail({ errMsg: `request:fail ${err.message}` }))
    },
    uploadFile ({ url, filePath, name, header = {}, formData = {}, success, fail }) {
      wx.routes.push(`POST ${new URL(url).pathname}`)
      Promise.resolve().then(async () => {
        const form = new FormData()
        for (const key of Object.keys(formData)) form.append(key, formData[key])
        const type = filePath.endsWith('.png') ? 'image/png' : 'application/octet-stream'
        form.append(name, new Blob([readFileSync(filePath)], { type }), basename(filePath))
        const res = await fetch(url, { method: 'POST', headers: header, body: form })
        success({ statusCode: res.status, data: await res.text(), header: Object.fromEntries(res.headers) })
      }).catch((err) => fail({ errMsg: `uploadFile:fail ${err.message}` }))
    },
    getUserProfile ({ success, fail }) {
      postJson(`${SIM_URL}/sim/getUserProfile`, { appid: APPID, user })
        .then(success, (err) => fail({ errMsg: `getUserProfile:fail ${err.message}` }))
    },
    // wx storage keeps a serialised copy, not the object itself.
    getStorageSync: (key) => storage.has(key) ? JSON.parse(storage.get(key)) : '',
    setStorageSync: (key, value) => { storage.set(key, JSON.stringify(value)) },
    removeStorageSync: (key) => { storage.delete(key) }
  }
  return wx
}

const count = (wx, route) => wx.routes.filter((r) => r === route).length

const wx = realWx(USER)
const identity = new IdentityClient({ baseUrl: IDENTITY_URL, appid: APPID, wx })
let failed = false

async function step (name, run) {
  if (SKIP.has(name)) {
    console.log(JSON.stringify({ step: name, skipped: true }))
    return
  }
  try {
    const seen = await run()
    console.log(JSON.stringify(Object.assign({ step: name, ok: true }, seen)))
  } catch (err) {
    failed = true
    const error = err instanceof IdentityError
      ? { code: err.code, status: err.status, detail: err.detail }
      : { message: String(err && err.message ? err.message : err) }
    console.log(JSON.stringify({ step: name, ok: false, error }))
  }
}

function check (condition, what) {
  if (!condition) throw new Error(`expected ${what}`)
}

/** `read()` until `done` holds of its answer, for up to 5 s; answers the last read. */
async function eventually (read, done) {
  const until = Date.now() + 5000
  for (;;) {
    const value = await read()
    if (done(value) || Date.now() > until) return value
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Resolves to the IdentityError `promise` rejects with; an answer is a failure. */
async function refusal (promise) {
  try {
    await promise
  } catch (err) {
    if (err instanceof IdentityError) return err
    throw err
  }
  throw new Error('expected a refusal, got an answer')
}

let user
await step('login', async () => {
  user = await identity.login()
  check(identity.isLoggedIn(), 'tokens stored')
  return { user_id: user.user_id, is_new_user: user.is_new_user, logins: count(wx, 'POST /v1/wechat/login') }
})

await step('me', async () => {
  const me = await identity.me()
  check(me.user_id === user.user_id, 'the logged-in user')
  return { user_id: me.user_id }
})

await step('avatar', async () => {
  check(AVATAR_PNG, 'AVATAR_PNG (a PNG file)')
  const me = await identity.updateProfile({ avatarTempFilePath: AVATAR_PNG })
  const url = me.profile && me.profile.avatar_url
  check(typeof url === 'string', 'profile.avatar_url')
  const image = await fetch(url)
  const contentType = image.headers.get('content-type')
  const bytes = (await image.arrayBuffer()).byteLength
  check(image.status === 200 && contentType === 'image/png', `200 image/png from ${url}`)
  return { avatar_url: url, fetched_status: image.status, content_type: contentType, bytes }
})

await step('nickname', async () => {
  const me = await identity.updateProfile({ nickname: 'Ada' })
  check(me.profile && me.profile.nickname === 'Ada', 'the nickname stored')
  return { nickname: me.profile.nickname }
})

await step('nickname_rejected', async () => {
  const err = await refusal(identity.updateProfile({ nickname: RISKY_NICKNAME }))
  check(err.code === 'content_rejected' && err.status === 422, `422 content_rejected, got ${err.status} ${err.code}`)
  const me = await identity.me()
  check(me.profile && me.profile.nickname === 'Ada', 'the refused nickname was not stored')
  return { code: err.code, status: err.status, nickname_kept: me.profile.nickname }
})

await step('phone', async () => {
  const { code } = await postJson(`${SIM_URL}/sim/getPhoneNumber`, { appid: APPID, user: USER })
  const result = await identity.bindPhone({ type: 'getphonenumber', detail: { errMsg: 'getPhoneNumber:ok', code } })
  check(result.status === 'bound' && result.user.phone, 'a bound phone')
  return { status: result.status, phone_bound: true }
})

await step('phone_denied', async () => {
  const before = wx.routes.length
  const result = await identity.bindPhone({ type: 'getphonenumber', detail: { errMsg: 'getPhoneNumber:fail user deny' } })
  check(result.status === 'denied', 'denied')
  return { status: result.status, requests: wx.routes.length - before }
})

await step('legacy_profile', async () => {
  const me = await identity.authorizeLegacyProfile()
  check(me.profile, 'a profile')
  return { profile_fields: Object.keys(me.profile).sort() }
})

let spent
await step('refresh', async () => {
  const stored = wx.getStorageSync(STORAGE_KEY)
  spent = stored.refresh_token
  wx.setStorageSync(STORAGE_KEY, Object.assign({}, stored, { access_token: stored.access_token + 'x' }))
  const before = count(wx, 'POST /v1/token/refresh')
  const me = await identity.me()
  const refreshes = count(wx, 'POST /v1/token/refresh') - before
  check(me.user_id === user.user_id && refreshes === 1, `one refresh, got ${refreshes}`)
  check(wx.getStorageSync(STORAGE_KEY).refresh_token !== spent, 'a rotated refresh token')
  return { refreshes }
})

await step('relogin_after_reuse', async () => {
  // Present the spent refresh token again: the service sees a reuse and revokes the session;
  // the SDK logs in afresh, silently, once.
  const stored = wx.getStorageSync(STORAGE_KEY)
  wx.setStorageSync(STORAGE_KEY, Object.assign({}, stored, { access_token: 'tampered', refresh_token: spent }))
  const [refreshes, logins] = [count(wx, 'POST /v1/token/refresh'), count(wx, 'POST /v1/wechat/login')]
  const me = await identity.me()
  const seen = { refreshes: count(wx, 'POST /v1/token/refresh') - refreshes, logins: count(wx, 'POST /v1/wechat/login') - logins }
  check(me.user_id === user.user_id && seen.refreshes === 1 && seen.logins === 1, 'one refresh, one login')
  return seen
})

await step('sessions', async () => {
  const other = realWx(USER)
  const device = new IdentityClient({ baseUrl: IDENTITY_URL, appid: APPID, wx: other })
  await device.login()
  const theirs = (await device.sessions()).find((s) => s.current)
  check(theirs, "the other device's current session")
  const listed = (sessions) => sessions.some((s) => s.session_id === theirs.session_id)
  // The list is a read model, a few milliseconds behind the log.
  const mine = await eventually(() => identity.sessions(), listed)
  check(listed(mine), 'the other device listed')
  await identity.endSession(theirs.session_id)
  const after = await eventually(() => identity.sessions(), (sessions) => !listed(sessions))
  check(!listed(after), 'the ended session gone')
  const stale = other.getStorageSync(STORAGE_KEY).access_token
  const probe = await fetch(`${IDENTITY_URL}/v1/me`, { headers: { authorization: `Bearer ${stale}` } })
  check(probe.status === 401, `401 for the ended session's token, got ${probe.status}`)
  return { listed: mine.length, current: mine.filter((s) => s.current).length, after_end: after.length, ended_device_status: probe.status }
})

await step('logout', async () => {
  const token = wx.getStorageSync(STORAGE_KEY).access_token
  await identity.logout()
  check(!identity.isLoggedIn(), 'storage cleared')
  const probe = await fetch(`${IDENTITY_URL}/v1/me`, { headers: { authorization: `Bearer ${token}` } })
  check(probe.status === 401, `401 for the old token, got ${probe.status}`)
  return { logged_in: identity.isLoggedIn(), old_token_status: probe.status }
})

process.exit(failed ? 1 : 0)
