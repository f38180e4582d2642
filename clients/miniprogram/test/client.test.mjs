// The SDK under Node with a fake wx (fake_wx.mjs). `npm test` first builds the sources into
// build/test (the same sources miniprogram_dist is built from).
import { test as nodeTest } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { APPID, BASE_URL, fakeWx, json, problem } from './fake_wx.mjs'

const { IdentityClient, IdentityError } = createRequire(import.meta.url)('../build/test/index.js')

function client (wx, options = {}) {
  return new IdentityClient(Object.assign({ baseUrl: BASE_URL + '/', appid: APPID, wx }, options))
}

// A client that has logged in.
async function loggedIn (wx) {
  const identity = client(wx)
  await identity.login()
  return identity
}

// For assert.rejects: the IdentityError with this code and status.
const failsWith = (code, status) => (err) => err.code === code && err.status === status

const KEY = `identityd:${APPID}`

// A retry loop must fail a test, not hang the run.
const test = (name, fn) => nodeTest(name, { timeout: 5000 }, fn)

test('tokens persist in wx storage, namespaced by storageKey and appid, and a new client picks them up', async () => {
  const wx = fakeWx()
  const first = client(wx)
  assert.equal(first.isLoggedIn(), false)
  const user = await first.login()
  assert.equal(user.user_id, 'u-1')
  assert.deepEqual([...wx.storage.keys()], [KEY])
  const stored = wx.getStorageSync(KEY)
  assert.equal(stored.access_token, 'access-1')
  assert.equal(stored.refresh_token, 'refresh-1')

  const second = client(wx)
  assert.equal(second.isLoggedIn(), true)
  assert.equal((await second.me()).user_id, 'u-1')
  assert.equal(wx.loginCalls, 1, 'the stored token was used, no new login')

  assert.equal(client(wx, { appid: 'wxd000000000000002' }).isLoggedIn(), false)
  assert.equal(client(wx, { storageKey: 'other' }).isLoggedIn(), false)
})

test('many concurrent callers without tokens share one login (wx.login called once)', async () => {
  const wx = fakeWx()
  const identity = client(wx)
  const users = await Promise.all([
    identity.login(), identity.login(), identity.me(), identity.me(), client(wx).me()
  ])
  assert.equal(wx.loginCalls, 1)
  assert.equal(wx.service.count('POST /v1/wechat/login'), 1)
  for (const user of users) assert.equal(user.user_id, 'u-1')
})

test('a new login ends the session it replaces on this phone, and only that one', async () => {
  const wx = fakeWx()
  const identity = await loggedIn(wx)
  let ended
  wx.service.override.set('POST /v1/logout', (req) => {
    ended = req.header.authorization
    return { statusCode: 204, data: '' }
  })
  await identity.login()
  await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(ended, 'Bearer access-1')
  assert.equal(wx.getStorageSync(KEY).access_token, 'access-2')
  assert.equal(wx.service.count('POST /v1/logout'), 1)
})

test('concurrent 401s share exactly one refresh, and the rotation is saved in one write', async () => {
  const wx = fakeWx()
  const identity = await loggedIn(wx)
  wx.service.expireAccessTokens()
  const writesBefore = wx.storageWrites.length
  const users = await Promise.all([identity.me(), identity.me(), identity.me(), client(wx).me()])
  assert.equal(users.length, 4)
  assert.equal(wx.service.count('POST /v1/token/refresh'), 1)
  assert.equal(wx.service.count('GET /v1/me'), 8, 'each call tried, then retried once')
  assert.equal(wx.loginCalls, 1)
  // Both tokens of the rotation in one setStorageSync, never one beside the other's old value.
  const writes = wx.storageWrites.slice(writesBefore)
  assert.equal(writes.length, 1)
  assert.equal(writes[0][0], KEY)
  assert.equal(writes[0][1].access_token, 'access-2')
  assert.equal(writes[0][1].refresh_token, 'refresh-2')
})

test('a 401 arriving after another caller refreshed retries with the new token, no second refresh', async () => {
  const wx = fakeWx()
  const identity = await loggedIn(wx)
  wx.service.expireAccessTokens()
  // The second call's 401 arrives after the first call's refresh is over.
  wx.delay = (options) => options.url.endsWith('/v1/me/sessions?limit=200') ? 60 : 5
  wx.service.override.set('GET /v1/me/sessions', (req) => wx.service.access.has(req.header.authorization.slice(7))
    ? json(200, { items: [], next_cursor: null })
    : problem(401, 'unauthorized'))
  await Promise.all([identity.me(), identity.sessions()])
  assert.equal(wx.service.count('POST /v1/token/refresh'), 1)
  assert.equal(wx.service.count('GET /v1/me/sessions'), 2)
})

test('an access token about to expire is refreshed before the call', async () => {
  const wx = fakeWx()
  wx.service.expiresIn = 30 // under the SDK's one-minute margin
  const identity = await loggedIn(wx)
  await identity.me()
  assert.equal(wx.service.count('POST /v1/token/refresh'), 1)
  assert.deepEqual(wx.service.calls.filter((c) => c === 'GET /v1/me').length, 1, 'no 401 first')
})

test('a refused (reused) refresh token leads to one fresh silent login, then success', async () => {
  const wx = fakeWx()
  const identity = await loggedIn(wx)
  wx.service.expireAccessTokens()
  wx.service.sessions.get('refresh-1').live = false // as after a reuse revoked the session
  const users = await Promise.all([identity.me(), identity.me()])
  assert.equal(users[1].user_id, 'u-1')
  assert.equal(wx.service.count('POST /v1/token/refresh'), 1)
  assert.equal(wx.loginCalls, 2)
  assert.equal(wx.service.count('POST /v1/wechat/login'), 2)
  assert.equal(wx.getStorageSync(KEY).refresh_token, 'refresh-2')
})

test('no loop: when the refresh is refused and login fails too, the error surfaces', async () => {
  const wx = fakeWx()
  const identity = await loggedIn(wx)
  wx.service.endSessions()
  wx.loginFails = true
  await assert.rejects(identity.me(), (err) => err instanceof IdentityError && err.code === 'wechat_login_failed' && err.status === 0)
  assert.equal(wx.loginCalls, 2)
  assert.equal(wx.service.count('POST /v1/token/refresh'), 1)
  assert.equal(identity.isLoggedIn(), false)
})

test('no loop: a 401 that survives refresh and login surfaces as unauthorized', async () => {
  const wx = fakeWx()
  wx.service.override.set('GET /v1/me', () => problem(401, 'unauthorized'))
  const identity = await loggedIn(wx)
  await assert.rejects(identity.me(), failsWith('unauthorized', 401))
  assert.equal(wx.service.count('GET /v1/me'), 2, 'one try, one retry')
  assert.equal(wx.service.count('POST /v1/token/refresh'), 1)
  assert.equal(wx.loginCalls, 1)
})

test('bindPhone: no code in the event (the user refused) is a denied result, not an exception', async () => {
  const wx = fakeWx()
  const identity = await loggedIn(wx)
  const denied = await identity.bindPhone({ detail: { errMsg: 'getPhoneNumber:fail user deny' } })
  assert.deepEqual(denied, { status: 'denied' })
  assert.equal(wx.service.count('POST /v1/me/phone'), 0)
  const bound = await identity.bindPhone({ detail: { code: 'phone-code' } })
  assert.equal(bound.status, 'bound')
  assert.equal(bound.user.phone.phone_number, '13800138000')
})

test("wx.request's fail callback is an IdentityError network_error", async () => {
  const wx = fakeWx()
  const identity = await loggedIn(wx)
  wx.offline = true
  await assert.rejects(identity.me(), (err) => {
    assert.ok(err instanceof IdentityError)
    assert.equal(err.code, 'network_error')
    assert.equal(err.status, 0)
    assert.match(err.detail, /timeout/)
    return true
  })
})

test('problem+json answers become IdentityError with code, status, detail and retryAfter', async () => {
  const wx = fakeWx()
  wx.service.override.set('PUT /v1/me/profile', () => problem(429, 'rate_limited', { 'Retry-After': '7' }))
  wx.service.override.set('POST /v1/me/phone', () => ({ statusCode: 502, data: '<html>bad gateway</html>' }))
  const identity = client(wx)
  await assert.rejects(identity.updateProfile({ nickname: 'Ada' }), (err) => {
    assert.ok(err instanceof IdentityError)
    assert.deepEqual([err.code, err.status, err.retryAfter, err.detail], ['rate_limited', 429, 7, 'a rate_limited problem'])
    return true
  })
  await assert.rejects(identity.bindPhone({ detail: { code: 'c' } }), failsWith('invalid_response', 502))
})

test('request() sends the token to this service only: a path must start with one /', async () => {
  const wx = fakeWx()
  const identity = client(wx)
  await identity.login()
  const sent = wx.service.calls.length
  for (const path of ['@evil.example/x', '//evil.example/x', '/\\evil.example', 'v1/me']) {
    await assert.rejects(identity.request({ path }), (err) => err.code === 'invalid_request' && err.status === 0)
  }
  assert.equal(wx.service.calls.length, sent, 'nothing sent')
  assert.ok(await identity.request({ path: '/v1/me' }))
})

test("updateProfile uploads the avatar with wx.uploadFile (field 'file') and parses its string answer", async () => {
  const wx = fakeWx()
  const identity = client(wx)
  const user = await identity.updateProfile({ avatarTempFilePath: 'wxfile://tmp/avatar.png', nickname: 'Ada' })
  assert.deepEqual(wx.uploads, [{ filePath: 'wxfile://tmp/avatar.png', name: 'file' }])
  assert.equal(user.profile.avatar_url, 'http://id.test/v1/avatars/a1')
  assert.equal(user.profile.nickname, 'Ada')

  wx.service.override.set('POST /v1/me/avatar', () => problem(415, 'unsupported_media_type'))
  await assert.rejects(identity.updateProfile({ avatarTempFilePath: 'wxfile://tmp/notes.txt' }), (err) => {
    assert.equal(err.code, 'unsupported_media_type')
    assert.equal(err.status, 415)
    return true
  })
  assert.equal(wx.service.count('PUT /v1/me/profile'), 1, 'nothing more after a refused upload')
})

test('an upload meeting a 401 refreshes and uploads again', async () => {
  const wx = fakeWx()
  const identity = await loggedIn(wx)
  wx.service.expireAccessTokens()
  await identity.updateProfile({ avatarTempFilePath: 'wxfile://tmp/a.png' })
  assert.equal(wx.uploads.length, 2)
  assert.equal(wx.service.count('POST /v1/token/refresh'), 1)
})

test('logout clears storage even when the call fails, and reports the failure', async () => {
  const wx = fakeWx()
  const identity = await loggedIn(wx)
  wx.offline = true
  await assert.rejects(identity.logout(), (err) => err.code === 'network_error')
  assert.equal(identity.isLoggedIn(), false)
  assert.equal(wx.storage.size, 0)

  wx.offline = false
  await identity.login()
  await identity.logout()
  assert.equal(wx.service.count('POST /v1/logout'), 1, 'the offline attempt never arrived')
  assert.equal(wx.storage.size, 0)
  await identity.logout() // not logged in: nothing to do
  assert.equal(wx.service.count('POST /v1/logout'), 1)
})

test('logout of a session already ended elsewhere succeeds, without a new login', async () => {
  const wx = fakeWx()
  const identity = await loggedIn(wx)
  wx.service.endSessions()
  await identity.logout()
  assert.equal(wx.loginCalls, 1)
  assert.equal(identity.isLoggedIn(), false)
})

test('eraseMe clears storage even when the call fails', async () => {
  const wx = fakeWx()
  wx.service.override.set('DELETE /v1/me', () => problem(409, 'conflict'))
  const identity = await loggedIn(wx)
  await assert.rejects(identity.eraseMe(), failsWith('conflict', 409))
  assert.equal(identity.isLoggedIn(), false)
})

test('cloudLogin saves the cloud function answer, and a lost session logs in the same way', async () => {
  const wx = fakeWx()
  let calls = 0
  wx.cloud = {
    callFunction ({ name, success }) {
      calls += 1
      assert.equal(name, 'login')
      setTimeout(() => success({ result: Object.assign(wx.service.tokens(), { user: wx.service.user }) }), 5)
    }
  }
  const identity = client(wx)
  assert.equal((await identity.cloudLogin()).user_id, 'u-1')
  assert.equal(client(wx).isLoggedIn(), true)
  wx.service.endSessions()
  await identity.me()
  assert.equal(calls, 2)
  assert.equal(wx.loginCalls, 0)
})

test('sessions follows next_cursor; withdraw and endSession call their routes', async () => {
  const wx = fakeWx()
  const pages = {
    '': json(200, { items: [{ session_id: 's1', current: true }], next_cursor: 'c1' }),
    c1: json(200, { items: [{ session_id: 's2' }], next_cursor: null })
  }
  wx.service.override.set('GET /v1/me/sessions', (req) => {
    const cursor = new URL(req.url).searchParams.get('cursor') || ''
    return pages[cursor]
  })
  wx.service.override.set('DELETE /v1/me/sessions/s2', () => ({ statusCode: 204, data: '' }))
  wx.service.override.set('DELETE /v1/me/authorizations/phone', () => ({ statusCode: 204, data: '' }))
  const identity = client(wx)
  assert.deepEqual((await identity.sessions()).map((s) => s.session_id), ['s1', 's2'])
  await identity.endSession('s2')
  await identity.withdraw('phone')
  assert.equal(wx.service.count('DELETE /v1/me/sessions/s2'), 1)
  assert.equal(wx.service.count('DELETE /v1/me/authorizations/phone'), 1)
})

test('tokens never appear in an error', async () => {
  const wx = fakeWx()
  const identity = await loggedIn(wx)
  wx.service.override.set('GET /v1/me', () => problem(503, 'wechat_unavailable'))
  await assert.rejects(identity.me(), (err) => {
    const text = JSON.stringify(err) + String(err) + err.stack
    assert.ok(!/access-|refresh-/.test(text), text)
    return true
  })
})
